"""manage.py rewrap_secrets: re-encrypt stored fernet: secrets under the newest
key of PAS_FERNET_KEYS (rotate: prepend a new key, run this, drop the old)."""

from __future__ import annotations

from typing import Any

from connectors.services import connector_secrets_rewrap
from pasportal.commands import ControlPlaneCommand


class Command(ControlPlaneCommand):
    help = "Re-encrypt every connector's fernet: secrets under the newest key."

    def handle(self, *args: Any, **options: Any) -> None:
        n = connector_secrets_rewrap(actor="manage.py rewrap_secrets")
        self.stdout.write(f"re-wrapped secrets of {n} connector(s)")
