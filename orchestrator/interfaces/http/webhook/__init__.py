"""Webhook ingest: ``POST /signals`` turns an authenticated HTTP request into a submitted signal.

Two body shapes, told apart by the ``ticker`` key:

* the project's signal JSON (the same as ``starter.py submit`` reads), and
* a TradingView alert filled from a documented template (:mod:`.alerts`).

Both become a :class:`~orchestrator.domain.signal.Signal` through
:func:`orchestrator.services.submit.parse_signal` and are submitted by
:func:`orchestrator.services.submit.submit_signal`, the CLI's own path: the same validation, the
same database row and ``REJECT_DUPLICATE`` workflow start in one transaction. A replayed request
finds the signal id taken and answers 200 with the existing workflow (:mod:`.app`).

Run it with ``python webhook.py`` (docs/webhook.md).
"""

from orchestrator.interfaces.http.webhook.alerts import TradingViewAlert
from orchestrator.interfaces.http.webhook.app import TokenBucket, create_app, serve

__all__ = ["TokenBucket", "TradingViewAlert", "create_app", "serve"]
