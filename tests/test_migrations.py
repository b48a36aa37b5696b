"""The migrations match the models, and each one can be undone and done again."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.oauth import TokenResponse

APP = "django_cloudsync"


def applied_migrations() -> set[tuple[str, str]]:
    return {key for key in MigrationExecutor(connection).loader.applied_migrations if key[0] == APP}


def migrate_to(targets: list[tuple[str, str | None]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def app_migrations_in_order() -> list[tuple[str, str]]:
    """This app's migrations from the first to the leaf, the order ``migrate`` applies them in."""
    graph = MigrationExecutor(connection).loader.graph
    (leaf,) = graph.leaf_nodes(APP)
    return [node for node in graph.forwards_plan(leaf) if node[0] == APP]


def token_table_columns() -> set[str]:
    """The columns of CloudSyncToken's table as the database has it (empty when there is none)."""
    table = CloudSyncToken._meta.db_table
    if table not in connection.introspection.table_names():
        return set()
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


# makemigrations reads the migration history of every database (PostgreSQL too, when configured).
@pytest.mark.django_db(databases="__all__")
def test_models_have_no_changes_missing_from_the_migrations() -> None:
    output = StringIO()

    # --check exits non-zero (SystemExit) when a migration is missing; --dry-run writes nothing.
    call_command("makemigrations", APP, check=True, dry_run=True, stdout=output, verbosity=1)

    assert "No changes detected" in output.getvalue()


# Schema changes on SQLite cannot run inside the test's transaction: a transactional test.
@pytest.mark.django_db(transaction=True)
def test_every_migration_can_be_unapplied_and_applied_again() -> None:
    migrations = app_migrations_in_order()
    assert migrations, "django_cloudsync has no migrations"
    previous: list[tuple[str, str | None]] = [(APP, None), *migrations[:-1]]
    try:
        # Step back from the leaf one migration at a time, then forward again to the leaf.
        for migration, before in zip(reversed(migrations), reversed(previous), strict=True):
            migrate_to([before])
            assert migration not in applied_migrations()
        assert applied_migrations() == set()
        assert token_table_columns() == set()

        migrate_to([migrations[-1]])

        assert applied_migrations() == set(migrations)
        assert token_table_columns() == {field.column for field in CloudSyncToken._meta.concrete_fields}
    finally:
        # Whatever failed above, leave the schema as the rest of the suite expects it.
        migrate_to([migrations[-1]])


@pytest.mark.django_db(transaction=True)
def test_undoing_the_owner_via_account_fills_the_user_column_from_each_rows_account() -> None:
    migrations = app_migrations_in_order()
    owner_via_account = migrations.index((APP, "0002_grant_client_id_owner_via_account"))
    users = [get_user_model().objects.create(username=name) for name in ("ada", "bob")]
    rows: dict[str, Any] = {}
    for user in users:
        account = SocialAccount.objects.create(user=user, provider="cloudsync", uid=f"usr_{user.username}")
        row = CloudSyncToken(social_account=account, account_id=account.uid)
        row.set_tokens(TokenResponse(f"at_test_{user.username}", None, expires_in=None, scope=None))
        row.save()
        rows[row.pk.hex] = user.pk
    table = connection.ops.quote_name(CloudSyncToken._meta.db_table)
    try:
        migrate_to([migrations[owner_via_account - 1]])

        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, user_id FROM {table}")  # noqa: S608 (our own table's name)
            owners = {str(pk).replace("-", ""): user_id for pk, user_id in cursor.fetchall()}
        assert owners == rows
    finally:
        migrate_to([migrations[-1]])
