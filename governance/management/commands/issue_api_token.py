"""manage.py issue_api_token USER [--reset]: an API token for a REST client, audited.

It writes ``governance.api_token.issued`` (or ``.reissued``) naming the
user, never the key, in the same transaction as the token (DRF's
``drf_create_token`` is audited too, by ``governance.accounts``, as an issue
or a revocation). The key is printed once, here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from governance import audit
from governance.accounts import audited_by_caller
from pasportal.commands import ControlPlaneCommand


class Command(ControlPlaneCommand):
    help = "Issue (or with --reset, replace) a user's REST API token; audited."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="replace the user's token (the old one stops working)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(
                f"no user {options['username']!r}", returncode=2
            ) from None
        if not user.is_active:
            raise CommandError(
                f"user {options['username']!r} is not active", returncode=2
            )
        with audited_by_caller(), transaction.atomic():
            old = Token.objects.filter(user=user).first()
            if old is not None and not options["reset"]:
                raise CommandError(
                    f"user {options['username']!r} already has a token; "
                    "--reset replaces it",
                    returncode=2,
                )
            if old is not None:
                old.delete()
            token = Token.objects.create(user=user)
            audit.record(
                actor="manage.py issue_api_token",
                action="governance.api_token."
                + ("reissued" if old is not None else "issued"),
                target=user,
                data={"user": user.get_username()},
            )
        self.stdout.write(token.key)
