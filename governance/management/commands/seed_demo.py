"""Create the demo project and one demo user per role, printing their passwords.

The demo project gets the generated legacy PAS's crosswalks, their rows
proposed for review, so the main job's misses reach the stewards' miss queue.
``--mapping-set`` (after the main job has registered the source) extracts the
source's schema and starts a mapping set from the default contract, every
field proposed: the stewards' four-eyes review has real work to show; it
also registers the Synthea CSV extract beside the checkout as a second source
(schema extracted), a source the product never saw, to map in the browser.

Passwords are generated on first creation and kept in ``var/demo-credentials.json``
(mode 0600, development only) so later runs can print them again; the database
keeps only hashes. Refused when PAS_ENV=production.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from connectors.services import connector_create
from governance.models import MigrationProject
from governance.roles import Role
from governance.services import membership_grant, project_create, role_groups_ensure
from migration.engine.errors import EngineError
from migration.models import FieldMapping, MappingSet
from migration.services.crosswalks import crosswalks_seed_defaults
from migration.services.mappings import mapping_set_import_contract
from migration.services.snapshots import snapshot_extract
from pasportal.commands import ControlPlaneCommand

DEMO_PROJECT = {"name": "Demo Trust PAS migration", "slug": "demo", "ods_code": "RXX"}
USERNAMES = {
    Role.DM_ENGINEER: "dm.engineer",
    Role.DATA_STEWARD: "steward",
    Role.MIGRATION_LEAD: "migration.lead",
    Role.IG_LEAD: "ig.lead",
    Role.CLINICAL_SAFETY_OFFICER: "safety.officer",
    Role.AUDITOR: "auditor",
    Role.VIEWER: "viewer",
}
#: Third-party CSV extract beside the checkout (``shared/data/synthea``).
SYNTHEA = settings.BASE_DIR.parent / "shared" / "data" / "synthea"
SYNTHEA_NAME = "Synthea extract (third-party CSV)"
# A second steward so four-eyes review can be shown in the demo.
EXTRA = [("steward2", Role.DATA_STEWARD)]


class Command(ControlPlaneCommand):
    help = "Create the demo project and one user per role (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--mapping-set",
            action="store_true",
            help="only extract the demo source's schema and start a mapping set "
            "from the default contract (once the main job has registered it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo is for development only", returncode=2)
        if options["mapping_set"]:
            self._mapping_set()
            return
        path = settings.VAR_DIR / "demo-credentials.json"
        stored: dict[str, str] = {}
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
        User = get_user_model()
        with transaction.atomic():
            role_groups_ensure()
            project = MigrationProject.objects.filter(slug=DEMO_PROJECT["slug"]).first()
            if project is None:
                project = project_create(actor="seed_demo", **DEMO_PROJECT)
            people = [(name, role) for role, name in USERNAMES.items()] + EXTRA
            for username, role in people:
                user = User.objects.filter(username=username).first()
                if user is None or username not in stored:
                    password = secrets.token_urlsafe(12)
                    if user is None:
                        user = User.objects.create_user(
                            username=username, password=password
                        )
                    else:
                        user.set_password(password)
                    # DM engineers configure connectors in the Django admin.
                    user.is_staff = role == Role.DM_ENGINEER
                    user.save()
                    stored[username] = password
                membership_grant(
                    actor="seed_demo", project=project, user=user, role=role
                )
            crosswalks_seed_defaults(actor="seed_demo", project=project)
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2), encoding="utf-8")
        path.chmod(0o600)
        self.stdout.write(f"Demo project: {project.name}")
        self.stdout.write("Demo users (username / password / role):")
        for username, role in [(n, r) for r, n in USERNAMES.items()] + EXTRA:
            self.stdout.write(f"  {username:<16} {stored[username]:<18} {role}")

    def _mapping_set(self) -> None:
        project = MigrationProject.objects.filter(slug=DEMO_PROJECT["slug"]).first()
        if project is None:
            raise CommandError("no demo project: run seed_demo first", returncode=2)
        if MappingSet.objects.filter(project=project).exists():
            self.stdout.write("The demo project already has a mapping set.")
            self._synthea(project)
            return
        source = project.connectors.filter(role="source").order_by("pk").first()
        if source is None:
            raise CommandError(
                "the demo project has no source connector: run the main job "
                "(run_lifecycle --project demo) first",
                returncode=2,
            )
        try:
            snapshot = snapshot_extract(actor="seed_demo", connector=source)
        except EngineError as exc:  # the source could not be read: say why
            raise CommandError(
                f"could not read the demo source {source.name!r}: {exc}", returncode=1
            ) from None
        ms = mapping_set_import_contract(
            actor="seed_demo", project=project, source_snapshot=snapshot
        )
        fields = FieldMapping.objects.filter(table_mapping__mapping_set=ms).count()
        self.stdout.write(
            f"Mapping set {ms.name!r}: {fields} field mappings proposed for "
            "the stewards' review."
        )
        self._synthea(project)

    def _synthea(self, project: MigrationProject) -> None:
        """Register the third-party Synthea extract beside the checkout as a
        second source, its schema extracted: "a source we never saw" to map
        in the browser (suggestions start from its snapshot page)."""
        if not SYNTHEA.is_dir():
            self.stdout.write(f"(no Synthea extract at {SYNTHEA}: not registered)")
            return
        source = project.connectors.filter(name=SYNTHEA_NAME).first()
        if source is None:
            source = connector_create(
                actor="seed_demo",
                project=project,
                name=SYNTHEA_NAME,
                kind="csv",
                role="source",
                config={"path": str(SYNTHEA)},
            )
        if source.snapshots.exists():
            return
        try:
            snapshot = snapshot_extract(actor="seed_demo", connector=source)
        except EngineError as exc:
            self.stdout.write(f"(the Synthea extract could not be read: {exc})")
            return
        self.stdout.write(
            f"A source never seen before: {SYNTHEA_NAME!r}, schema extracted "
            f"({len(snapshot.tables or [])} tables); start a mapping set from "
            "suggestions on its snapshot page."
        )
