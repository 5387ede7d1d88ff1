"""Schema upgrades on a database that already holds data, the check that refuses a database
whose schema is behind the code's, and the migrations matching the code's tables, on SQLite and
PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from orchestrator.adapters.db.engine import MIGRATIONS, Database, SchemaNotCurrent
from orchestrator.adapters.db.schema import (
    Base,
    PaperAccountRow,
    PaperOrderRow,
    PaperQuoteRow,
)
from tests.support import PLANTED_PG_PASSWORD, schema_revisions, schema_version, with_password

HEAD, PREVIOUS = schema_revisions()


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


@pytest.fixture(params=["sqlite", "postgres"])
def bare_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no schema: a SQLite file not yet created, or an empty PostgreSQL
    database whose URL carries a password (trust auth ignores it)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'bare.db'}")
        yield db
        db.dispose()
        return
    admin: str = request.getfixturevalue("postgres_admin")
    name = f"teo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host_part = admin.split("://", 1)[1].rsplit("/", 1)[0]
    db = Database(with_password(f"postgresql+psycopg://{host_part}/{name}", PLANTED_PG_PASSWORD))
    yield db
    db.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_at_head_is_current(bare_db: Database) -> None:
    bare_db.migrate()

    bare_db.require_current()

    assert schema_version(bare_db) == [HEAD]


def test_a_database_without_a_schema_is_refused_naming_the_command_and_nothing_is_created(
    bare_db: Database, tmp_path: Path
) -> None:
    with pytest.raises(SchemaNotCurrent) as refused:
        bare_db.require_current()

    assert (refused.value.revision, refused.value.head) == (None, HEAD)
    message = str(refused.value)
    assert "has no schema yet" in message
    assert f"needs revision {HEAD}" in message
    assert "run `python starter.py db upgrade`" in message
    assert PLANTED_PG_PASSWORD not in message
    assert not (tmp_path / "bare.db").exists(), "checking creates no SQLite file"


def test_a_database_one_revision_behind_is_refused_naming_both_revisions_unchanged(
    bare_db: Database,
) -> None:
    bare_db.migrate(PREVIOUS)

    with pytest.raises(SchemaNotCurrent) as refused:
        bare_db.require_current()

    assert (refused.value.revision, refused.value.head) == (PREVIOUS, HEAD)
    message = str(refused.value)
    assert message == (
        f"the database at {bare_db.display_url} is at revision {PREVIOUS}, this code needs "
        f"{HEAD}: "
        "run `python starter.py db upgrade`"
    )
    assert PLANTED_PG_PASSWORD not in message
    assert schema_version(bare_db) == [PREVIOUS]


def test_the_url_shown_hides_the_password() -> None:
    db = Database("postgresql+psycopg://teo:s3cret@db.example:5432/orchestrator")

    assert db.display_url == "postgresql+psycopg://teo:***@db.example:5432/orchestrator"
    db.dispose()


def test_a_revision_this_code_does_not_know_passes_as_a_newer_one_during_a_rollout(
    bare_db: Database,
) -> None:
    """Migrate first: the previous version keeps running against the new schema."""
    bare_db.migrate()
    with bare_db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))

    bare_db.require_current()

    assert schema_version(bare_db) == ["0099"]


def downgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_the_paper_market_upgrade_keeps_the_paper_book_and_goes_back_down(
    bare_db: Database,
) -> None:
    """0007 adds the market's quotes, the paper accounts and the resting orders' columns: an
    order already in the paper book reads as one that executes on arrival, as it did."""
    bare_db.migrate("0006")
    now = datetime.now(UTC)
    with bare_db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO paper_orders (client_order_id, broker_order_id, account_id, symbol, "
                "side, order_type, quantity, limit_price, reference_price, status, "
                "filled_quantity, average_price, reject_text, schedule, final_status, "
                "submitted_at) VALUES ('o-1', 'P1', 'acc-1', 'EURUSD', 'BUY', 'MARKET', '1', "
                "NULL, '1.085', 'FILLED', '1', '1.085', NULL, '[]', 'FILLED', :now)"
            ),
            {"now": now},
        )

    bare_db.migrate("0007")

    with bare_db.transaction() as session:
        order = session.get(PaperOrderRow, "o-1")
        assert order is not None
        assert (order.resting, order.stop_price, order.evaluated_at) == (False, None, None)
        session.add(PaperQuoteRow(symbol="EURUSD", at=now, bid=Decimal("1.1"), ask=Decimal("1.2")))
        session.add(PaperAccountRow(account_id="acc-1", starting_balance=Decimal(5), opened_at=now))
    with bare_db.transaction() as session:
        assert session.get(PaperQuoteRow, ("EURUSD", now)) is not None

    downgrade(bare_db, "0006")

    assert schema_version(bare_db) == ["0006"]
    with bare_db.engine.connect() as connection:
        assert not bare_db.engine.dialect.has_table(connection, "paper_quotes")
        assert not bare_db.engine.dialect.has_table(connection, "paper_accounts")
        row = connection.execute(text("SELECT * FROM paper_orders")).mappings().one()
    assert row["client_order_id"] == "o-1"
    assert "resting" not in row
    bare_db.migrate()
    assert schema_version(bare_db) == [HEAD]


def test_the_migrations_build_exactly_the_tables_the_code_declares(bare_db: Database) -> None:
    bare_db.migrate()

    with bare_db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []
