"""Shared persona fixtures: every permission path is tested with these people.

Two projects; on ``project``: the mapping author (steward), a second steward,
a DM engineer, a migration lead, an IG lead, a clinical safety officer, an
auditor and a viewer; ``other_steward`` is a steward of ``other_project`` only;
``outsider`` belongs to nothing. Fixtures that need Django use the ``db``
fixture, so this file is harmless in the framework-free ``-p no:django`` pass.
"""

from __future__ import annotations

from typing import Any

import pytest

try:  # the engine pass runs with -p no:django and must not import Django
    import pytest_django  # noqa: F401

    HAVE_DJANGO = True
except ImportError:  # pragma: no cover
    HAVE_DJANGO = False


@pytest.fixture(autouse=True)
def _isolated_audit_head(request: Any, tmp_path_factory: Any) -> None:
    """Give every test its own exported audit chain head.

    The head file lives outside the database on purpose, so the per-test
    database rollback does not rewind it: without this, a later test's fresh
    chain would (rightly) look truncated against an earlier test's head.
    """
    if not request.config.pluginmanager.hasplugin("django"):
        return  # the framework-free engine pass
    settings = request.getfixturevalue("settings")
    settings.PAS_AUDIT_HEAD_FILE = tmp_path_factory.mktemp("audit") / "head.json"


if HAVE_DJANGO:

    @pytest.fixture(scope="session")
    def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Any:
        """pytest-django's test database, which is also dropped at the end.

        Each pytest process has its own database (``test_pasportal_<pid>``).
        A connection still open at the end (a runner thread's, a worker
        subprocess's) made the drop fail with only a warning, and every such
        run left a database behind on the machine. At the end the test
        database's other sessions are ended first; at the start, databases
        of runs whose process is gone (killed, or from before this fix) are
        dropped.
        """
        from django.db import connections

        conn = connections["default"]
        host = str(conn.settings_dict.get("HOST") or "")
        # Process ids say whose a database is only on this machine's server.
        local = host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/")
        if conn.vendor == "postgresql" and local:
            _drop_orphan_test_databases(conn.settings_dict)
        yield
        if conn.vendor == "postgresql":
            with django_db_blocker.unblock(), conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

    def _drop_orphan_test_databases(settings: dict[str, Any]) -> None:
        """Drop ``test_pasportal_<pid>[_gwN]`` databases whose process is gone."""
        import os
        import re

        import psycopg
        from psycopg import sql

        def alive(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # someone else's process: alive
                pass
            return True

        pattern = re.compile(r"test_pasportal_(\d+)(_gw\d+)?")
        with psycopg.connect(
            dbname="postgres",
            host=settings.get("HOST") or None,
            port=settings.get("PORT") or None,
            user=settings.get("USER") or None,
            password=settings.get("PASSWORD") or None,
            autocommit=True,
        ) as maint:
            names = [
                r[0]
                for r in maint.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'test_pasportal_%'"
                )
            ]
            for name in names:
                m = pattern.fullmatch(name)
                if m and not alive(int(m.group(1))):
                    maint.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )

    @pytest.fixture
    def make_user(db: Any) -> Any:
        from django.contrib.auth import get_user_model

        def _make(username: str, **extra: Any) -> Any:
            return get_user_model().objects.create_user(
                username=username, password="pw-" + username, **extra
            )

        return _make

    @pytest.fixture
    def project(db: Any) -> Any:
        from governance.services import project_create

        return project_create(actor="tests", name="Trust A migration", slug="trust-a")

    @pytest.fixture
    def other_project(db: Any) -> Any:
        from governance.services import project_create

        return project_create(actor="tests", name="Trust B migration", slug="trust-b")

    def _member(make_user: Any, project: Any, username: str, role: str) -> Any:
        from governance.services import membership_grant

        user = make_user(username, is_staff=(role == "dm_engineer"))
        membership_grant(actor="tests", project=project, user=user, role=role)
        return user

    @pytest.fixture
    def steward(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "steward.author", "data_steward")

    @pytest.fixture
    def steward2(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "steward.second", "data_steward")

    @pytest.fixture
    def other_steward(make_user: Any, other_project: Any) -> Any:
        return _member(make_user, other_project, "steward.other", "data_steward")

    @pytest.fixture
    def dm_engineer(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "dm.engineer", "dm_engineer")

    @pytest.fixture
    def migration_lead(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "migration.lead", "migration_lead")

    @pytest.fixture
    def ig_lead(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "ig.lead", "ig_lead")

    @pytest.fixture
    def safety_officer(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "safety.officer", "clinical_safety_officer")

    @pytest.fixture
    def auditor(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "auditor", "auditor")

    @pytest.fixture
    def viewer(make_user: Any, project: Any) -> Any:
        return _member(make_user, project, "viewer", "viewer")

    @pytest.fixture
    def outsider(make_user: Any) -> Any:
        return make_user("outsider")
