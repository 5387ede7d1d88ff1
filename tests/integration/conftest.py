"""Integration tier: the real Temporal dev server (the ``temporal`` CLI) and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.codec import load_codec
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import Settings
from orchestrator.domain import search_attributes
from tests.support import (
    PLANTED_FIX_PASSWORD,
    PLANTED_PG_PASSWORD,
    TEST_CODEC_KEYS,
    credential_leaks,
    protection_beyond_fills,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def protection_invariant(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of every integration scenario on PostgreSQL: no protective order working at
    the paper broker beyond what the fills left open, none on a flat position. This is the
    paper broker's own book only, so it finds nothing to check where the broker is a FIX peer.
    The ledger's side (``protection_violations``) is checked by each scenario itself, where
    its worker still runs and the keepers can settle: every scenario of
    ``test_fix_end_to_end.py`` (``ledger_protection_settled``), ``test_end_to_end.py``'s demo
    and the fault suite's ``protect≠`` column. Not here: a test's worker may stop in the
    middle of a keeper's resize, which the ledger shows for that moment."""
    db: Database | None = None
    if "postgres_db" in request.fixturenames:
        db = request.getfixturevalue("postgres_db")  # set up first, so torn down after this
    yield
    if db is not None:
        assert protection_beyond_fills(db, ledger=False) == []


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(Settings()),  # the project's own, unencrypted
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        ip="127.0.0.1",
    )
    yield env
    try:
        # Every history this session wrote, read with the test keys: no credential in any.
        codec = load_codec(keys=TEST_CODEC_KEYS, key_file=None, active=None)
        secrets = [
            PLANTED_PG_PASSWORD,
            PLANTED_FIX_PASSWORD,
            TEST_CODEC_KEYS.split(":", 1)[1],
        ]
        leaks = await credential_leaks(env.client, secrets, codec)
        assert not leaks, f"credentials found in workflow histories: {leaks}"
    finally:
        await env.shutdown()
