"""schemathesis against the webhook's own OpenAPI schema, with requests sent to the running app.

The schema is the app's own (``app.openapi()``, the document served at ``/openapi.json``,
which the last test compares). Generated requests carry the shared-secret header, so they
get past authentication and exercise validation and submission. The check that schema-valid
data is accepted (``positive_data_acceptance``) is left out on purpose: the schema cannot
express every rule (a stop on the losing side, a symbol the book knows, a signal id used
once), and the app answers those with 4xx by design. Every other default check applies: no
5xx, documented status codes, content types and response bodies that match the schema,
invalid data refused.
"""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from schemathesis.generation.case import Case
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import positive_data_acceptance

from orchestrator.config import Settings
from orchestrator.interfaces.http.webhook import create_app
from tests.http_support import SHARED_SECRET
from tests.webhook.conftest import RunningWebhook

OPENAPI = create_app(Settings(webhook_shared_secret=SHARED_SECRET)).openapi()
schema = from_dict(OPENAPI)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_webhook_conforms_to_its_own_openapi_schema(
    case: Case[Any], webhook: RunningWebhook
) -> None:
    case.call_and_validate(
        base_url=webhook.url,
        headers={"X-TEO-Token": SHARED_SECRET},
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )


def test_schema_under_test_is_the_one_the_app_serves(webhook: RunningWebhook) -> None:
    assert httpx.get(f"{webhook.url}/openapi.json").json() == OPENAPI
