"""What PAS Portal's management commands check before they touch the control plane.

A command run against a database that was never migrated (a fresh ``var/``,
a new ``DATABASE_URL``) used to stop at its first query with a traceback
ending ``no such table: auth_group``. These commands say instead which
database is not ready and what to run; a server that cannot be reached is
named the same way. Never a password: the location is the engine's host,
port and database name, or the SQLite file.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor


def database_location(using: str = DEFAULT_DB_ALIAS) -> str:
    """Return where the control-plane database is, without credentials."""
    s = connections[using].settings_dict
    if connections[using].vendor == "sqlite":
        return f"SQLite {s.get('NAME')}"
    host = s.get("HOST") or "local socket"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"{connections[using].vendor} {host}{port}/{s.get('NAME')}"


def require_migrated(using: str = DEFAULT_DB_ALIAS) -> None:
    """Raise CommandError naming the fix unless the database is reachable and migrated."""
    where = database_location(using)
    try:
        executor = MigrationExecutor(connections[using])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CommandError(
            f"cannot reach the control-plane database ({where}): "
            f"{type(exc).__name__}: {first}",
            returncode=2,
        ) from None
    if plan:
        apps = sorted({migration.app_label for migration, _ in plan})
        raise CommandError(
            f"the control-plane database ({where}) is not set up: "
            f"{len(plan)} migration(s) not applied ({', '.join(apps)}); "
            "run `python manage.py migrate` first (`make run` does)",
            returncode=2,
        )


class ControlPlaneCommand(BaseCommand):
    """A management command that reads or writes the control-plane database.

    Its ``handle`` runs only once the database is reachable and migrated;
    otherwise the command stops with a message that names the database and
    the fix (``CommandError``, no traceback) and exit status 2, the status of
    bad input and bad settings -- never 1, which ``run_lifecycle`` gives a
    failed gate and ``verify_audit`` a broken chain.
    """

    def execute(self, *args: Any, **options: Any) -> Any:
        require_migrated(options.get("database") or DEFAULT_DB_ALIAS)
        return super().execute(*args, **options)
