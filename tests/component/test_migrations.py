"""Schema upgrades on a database that already holds data, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import text

from orchestrator.adapters.db.engine import Database


def test_upgrade_from_the_first_revision_keeps_existing_accounts_on_sqlite(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    check_upgrade_keeps_accounts(db)


def test_upgrade_from_the_first_revision_keeps_existing_accounts_on_postgres(
    postgres_admin: str,
):
    name = "teo_test_migration"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    host_part = postgres_admin.split("://", 1)[1].rsplit("/", 1)[0]
    db = Database(f"postgresql+psycopg://{host_part}/{name}")
    try:
        check_upgrade_keeps_accounts(db)
    finally:
        db.dispose()
        with psycopg.connect(postgres_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_upgrade_keeps_accounts(db: Database) -> None:
    db.migrate("0001")
    now = datetime.now(UTC)
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO accounts (account_id, name, broker, currency, status, "
                "risk_per_trade, daily_loss_budget, max_drawdown, max_open_positions, max_lots, "
                "exclude_from_multi_account, symbol_map, paper, updated_at) VALUES "
                "('acc-1', 'Old', 'alpha', 'USD', 'ACTIVE', '0.01', '500', '0.1', 5, '5', "
                ":false, '{}', '{}', :now)"
            ),
            {"now": now, "false": False},
        )
        session.execute(
            text(
                "INSERT INTO account_state (account_id, balance, equity, peak_equity, "
                "free_margin, open_positions, realized_loss_today, risk_committed_today, as_of, "
                "version) VALUES ('acc-1', '100', '100', '100', '100', 0, '0', '0', :now, 1)"
            ),
            {"now": now},
        )
    db.migrate()
    with db.transaction() as session:
        row = session.execute(text("SELECT account_id, reserve_only FROM accounts")).one()
    assert (row.account_id, bool(row.reserve_only)) == ("acc-1", False)
    db.migrate()  # idempotent at head
