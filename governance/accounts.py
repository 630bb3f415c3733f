"""Account changes made anywhere but the admin land in the audit chain too.

The Django admin writes its own events (``governance.admin.AuditedAdmin``,
naming the person). Everything else that changes an account -- Django's
``createsuperuser`` and ``changepassword``, ``seed_demo``, the lifecycle's
service account, a shell -- is caught here, on the model's signals:
creation, a change to what the account may do or how it signs in
(``username``, ``is_active``, ``is_staff``, ``is_superuser``, the password),
and deletion. Field names and flags only, never a password or its hash.
Logging in (``last_login``) is not a change of the account.

API tokens likewise: ``issue_api_token`` and the admin record their own
events; a token made or deleted anywhere else (DRF's ``drf_create_token``, a
shell) is recorded here as ``governance.api_token.issued`` / ``.revoked``,
naming its owner, never the key.

Role groups are not followed: they carry no model permissions (what a role
may do comes from project memberships, audited by ``governance.services``).
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from governance import audit

#: The fields whose change is audited (the password by name only).
TRACKED = ("username", "is_active", "is_staff", "is_superuser", "password")
FLAGS = ("is_active", "is_staff", "is_superuser")

_admin_audits: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pas_admin_audits", default=False
)


@contextmanager
def audited_by_caller() -> Iterator[None]:
    """Within this block the caller (the admin, issue_api_token) records account
    and token changes itself, with its own actor: the signals stand aside."""
    token = _admin_audits.set(True)
    try:
        yield
    finally:
        _admin_audits.reset(token)


def _actor() -> str:
    argv = sys.argv
    if len(argv) > 1 and argv[0].endswith("manage.py"):
        return f"manage.py {argv[1]}"
    return "system"


def _skip(raw: bool) -> bool:
    return raw or _admin_audits.get()


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="pas.accounts.pre")
def _remember(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if _skip(raw) or instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & set(TRACKED):
        return
    instance._pas_before = (
        sender.objects.filter(pk=instance.pk).values(*TRACKED).first()
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="pas.accounts.post")
def _saved(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if _skip(raw):
        return
    user = instance.get_username()
    if created:
        audit.record(
            actor=_actor(),
            action="governance.account.created",
            target=instance,
            data={"user": user, **{f: getattr(instance, f) for f in FLAGS}},
        )
        return
    before = instance.__dict__.pop("_pas_before", None)
    if before is None:
        return
    changed = [f for f in TRACKED if before[f] != getattr(instance, f)]
    if changed:
        audit.record(
            actor=_actor(),
            action="governance.account.changed",
            target=instance,
            data={
                "user": user,
                "changed": changed,
                **{f: getattr(instance, f) for f in FLAGS if f in changed},
            },
        )


@receiver(
    post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="pas.accounts.deleted"
)
def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _skip(False):
        return
    audit.record(
        actor=_actor(),
        action="governance.account.deleted",
        target=("auth.user", instance.pk),
        data={"user": instance.get_username()},
    )


@receiver(post_save, sender=Token, dispatch_uid="pas.accounts.token_saved")
def _token_saved(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if _skip(raw) or not created:
        return
    audit.record(
        actor=_actor(),
        action="governance.api_token.issued",
        target=instance.user,
        data={"user": instance.user.get_username()},
    )


@receiver(post_delete, sender=Token, dispatch_uid="pas.accounts.token_deleted")
def _token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _skip(False):
        return
    user = get_user_model().objects.filter(pk=instance.user_id).first()
    audit.record(
        actor=_actor(),
        action="governance.api_token.revoked",
        target=user if user is not None else ("auth.user", instance.user_id),
        data={"user": user.get_username() if user is not None else None},
    )
