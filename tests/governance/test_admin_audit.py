"""Django admin writes land in the audit chain: projects through the
services, accounts, groups and API tokens through the admin's own log hooks.
Never a password, hash or token key in an event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token

from governance.audit import verify_database
from governance.models import AuditEvent, MigrationProject
from governance.services import project_create

pytestmark = pytest.mark.django_db
PASSWORD = "CANARY-admin-pw-7731"


def _events(prefix: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("seq"))


def _no_secret_in_the_chain(*secrets: str) -> None:
    dump = json.dumps(
        [[e.action, e.data, e.actor] for e in AuditEvent.objects.all()], default=str
    )
    for secret in secrets:
        assert secret not in dump


def test_a_project_changed_in_the_admin_is_audited_and_cannot_be_deleted(
    admin_client: Any,
) -> None:
    project = project_create(actor="test", name="Trust A", slug="trust-a")
    url = f"/admin/governance/migrationproject/{project.pk}/change/"
    page = admin_client.post(
        url,
        {
            "name": "Trust A (renamed)",
            "slug": "trust-a",
            "description": "",
            "ods_code": "RXA",
        },
    )
    assert page.status_code == 302, page.content[:2000]
    project.refresh_from_db()
    assert (project.name, project.ods_code) == ("Trust A (renamed)", "RXA")
    [event] = _events("governance.project.updated")
    assert event.data == {
        "changed": {"name": ["Trust A", "Trust A (renamed)"], "ods_code": ["", "RXA"]}
    }
    assert event.actor["username"] == "admin"
    # Saving again unchanged writes no event.
    admin_client.post(
        url,
        {
            "name": "Trust A (renamed)",
            "slug": "trust-a",
            "description": "",
            "ods_code": "RXA",
        },
    )
    assert len(_events("governance.project.updated")) == 1
    delete = admin_client.post(
        f"/admin/governance/migrationproject/{project.pk}/delete/", {"post": "yes"}
    )
    assert delete.status_code == 403
    assert MigrationProject.objects.filter(pk=project.pk).exists()


def test_a_project_added_in_the_admin_is_audited(admin_client: Any) -> None:
    page = admin_client.post(
        "/admin/governance/migrationproject/add/",
        {"name": "Trust B", "slug": "trust-b", "description": "x", "ods_code": ""},
    )
    assert page.status_code == 302, page.content[:2000]
    [event] = _events("governance.project.created")
    assert event.data == {"name": "Trust B", "slug": "trust-b"}
    assert event.target_id == str(MigrationProject.objects.get(slug="trust-b").pk)


def test_accounts_groups_and_tokens_changed_in_the_admin_are_audited(
    admin_client: Any,
) -> None:
    User = get_user_model()
    added = admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "bob",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert added.status_code == 302, added.content[:2000]
    bob = User.objects.get(username="bob")
    [created] = _events("admin.auth.user.created")
    assert created.data["object"] == "bob"
    assert created.target_type == "auth.user" and created.target_id == str(bob.pk)

    group = Group.objects.create(name="data_steward")
    changed = admin_client.post(
        f"/admin/auth/user/{bob.pk}/change/",
        {
            "username": "bob",
            "first_name": "",
            "last_name": "",
            "email": "",
            "is_active": "on",
            "is_staff": "on",
            "groups": [str(group.pk)],
            "date_joined_0": "2026-11-28",
            "date_joined_1": "10:00:00",
            "initial-date_joined_0": "2026-11-28",
            "initial-date_joined_1": "10:00:00",
        },
    )
    assert changed.status_code == 302, changed.content[:3000]
    bob.refresh_from_db()
    assert bob.is_staff and list(bob.groups.all()) == [group]
    [change] = _events("admin.auth.user.changed")
    fields = change.data["change"][0]["changed"]["fields"]
    assert {"Staff status", "Groups"} <= set(fields)

    new_pw = PASSWORD + "-2"
    pw = admin_client.post(
        f"/admin/auth/user/{bob.pk}/password/",
        {"password1": new_pw, "password2": new_pw},
    )
    assert pw.status_code == 302, pw.content[:2000]
    bob.refresh_from_db()
    assert bob.check_password(new_pw)
    assert _events("admin.auth.user.changed")[-1].data["change"] == [
        {"changed": {"fields": ["password"]}}  # the field's name, nothing of it
    ]

    token = admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": str(bob.pk)})
    assert token.status_code == 302, token.content[:2000]
    key = Token.objects.get(user=bob).key
    [issued] = _events("admin.authtoken.tokenproxy.created")
    assert issued.data["object"] == "API token of bob"

    deleted = admin_client.post(f"/admin/auth/user/{bob.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302, deleted.content[:2000]
    assert not User.objects.filter(username="bob").exists()
    [gone] = _events("admin.auth.user.deleted")
    assert gone.data["object"] == "bob"

    _no_secret_in_the_chain(PASSWORD, new_pw, key, bob.password)
    # Recorded once, by the admin with its user: the account signals stood aside.
    assert not [e for e in _events("governance.account.") if e.data["user"] == "bob"]
    assert verify_database().ok


def test_issue_api_token_is_audited_by_user_never_by_key() -> None:
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    User = get_user_model()
    carol = User.objects.create_user(username="carol")
    out = StringIO()
    call_command("issue_api_token", "carol", stdout=out)
    key = out.getvalue().strip()
    assert Token.objects.get(user=carol).key == key
    [issued] = _events("governance.api_token.issued")
    assert issued.data == {"user": "carol"}
    assert issued.target_id == str(carol.pk)

    with pytest.raises(CommandError, match="already has a token") as refused:
        call_command("issue_api_token", "carol", stdout=StringIO())
    assert refused.value.returncode == 2
    out = StringIO()
    call_command("issue_api_token", "carol", "--reset", stdout=out)
    new_key = out.getvalue().strip()
    assert new_key != key
    assert list(Token.objects.filter(user=carol).values_list("key", flat=True)) == [
        new_key
    ]
    assert len(_events("governance.api_token.reissued")) == 1
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("issue_api_token", "nobody", stdout=StringIO())
    _no_secret_in_the_chain(key, new_key)


def test_account_changes_made_outside_the_admin_are_audited(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """createsuperuser, a password set in a shell, a deletion; not a login."""
    from io import StringIO

    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command(
        "createsuperuser",
        "--noinput",
        "--username",
        "root2",
        "--email",
        "r@example.org",
        stdout=StringIO(),
    )
    [created] = _events("governance.account.created")
    assert created.data == {
        "user": "root2",
        "is_active": True,
        "is_staff": True,
        "is_superuser": True,
    }
    User = get_user_model()
    root2 = User.objects.get(username="root2")

    client.force_login(root2)  # last_login only: not a change of the account
    assert not _events("governance.account.changed")

    root2.set_password(PASSWORD + "-new")
    root2.is_superuser = False
    root2.save()
    [changed] = _events("governance.account.changed")
    assert changed.data == {
        "user": "root2",
        "changed": ["is_superuser", "password"],
        "is_superuser": False,
    }

    root2.first_name = "Ro"  # not what the account may do: no event
    root2.save()
    assert len(_events("governance.account.changed")) == 1

    pk = root2.pk
    root2.delete()
    [deleted] = _events("governance.account.deleted")
    assert (deleted.target_type, deleted.target_id) == ("auth.user", str(pk))
    assert deleted.data == {"user": "root2"}
    _no_secret_in_the_chain(PASSWORD, PASSWORD + "-new")
    assert verify_database().ok


def test_a_bulk_delete_from_the_admin_list_is_audited(admin_client: Any) -> None:
    User = get_user_model()
    doomed = [User.objects.create_user(username=f"tmp{i}") for i in range(2)]
    page = admin_client.post(
        "/admin/auth/user/",
        {
            "action": "delete_selected",
            "_selected_action": [str(u.pk) for u in doomed],
            "post": "yes",
        },
    )
    assert page.status_code == 302, page.content[:2000]
    assert not User.objects.filter(username__startswith="tmp").exists()
    gone = _events("admin.auth.user.deleted")
    assert sorted(e.data["object"] for e in gone) == ["tmp0", "tmp1"]
    assert all(e.actor["username"] == "admin" for e in gone)
    # The admin's own events only: the account signals stood aside.
    assert not _events("governance.account.deleted")
    assert verify_database().ok


def test_tokens_made_or_deleted_outside_our_command_and_the_admin_are_audited() -> None:
    """DRF's drf_create_token (and a shell) cannot issue a token unrecorded."""
    from io import StringIO

    from django.core.management import call_command

    User = get_user_model()
    dave = User.objects.create_user(username="dave")
    out = StringIO()
    call_command("drf_create_token", "dave", stdout=out)
    key = Token.objects.get(user=dave).key
    [issued] = _events("governance.api_token.issued")
    assert issued.data == {"user": "dave"} and issued.target_id == str(dave.pk)
    call_command("drf_create_token", "dave", "--reset", stdout=StringIO())
    new_key = Token.objects.get(user=dave).key
    [revoked] = _events("governance.api_token.revoked")
    assert revoked.data == {"user": "dave"}
    assert len(_events("governance.api_token.issued")) == 2
    Token.objects.filter(user=dave).delete()  # queryset delete, as a shell would
    assert len(_events("governance.api_token.revoked")) == 2
    _no_secret_in_the_chain(key, new_key)
    assert verify_database().ok


def _schedule_post(schedule: Any, **changes: Any) -> dict[str, Any]:
    from django.utils import timezone

    next_run = timezone.localtime(schedule.next_run)
    body = {
        "schedule_type": schedule.schedule_type,
        "minutes": schedule.minutes or "",
        "cron": schedule.cron or "",
        "next_run_0": next_run.strftime("%Y-%m-%d"),
        "next_run_1": next_run.strftime("%H:%M:%S"),
        # A field with a callable default posts its initial value too.
        "initial-next_run_0": next_run.strftime("%Y-%m-%d"),
        "initial-next_run_1": next_run.strftime("%H:%M:%S"),
        "repeats": schedule.repeats,
        "cluster": schedule.cluster or "",
    }
    body.update(changes)
    return body


def test_q2_schedules_keep_what_they_call_and_a_timing_change_is_audited(
    admin_client: Any,
) -> None:
    """django-q2's admin would schedule any dotted callable with any arguments."""
    from django_q.models import Schedule

    from migration.schedules import SCHEDULES

    stale = Schedule.objects.get(func="migration.tasks.runs_detect_stale")
    stale.next_run = stale.next_run.replace(microsecond=0)
    stale.save(update_fields=["next_run"])
    assert Schedule.objects.count() == len(SCHEDULES)  # written by migrate
    url = f"/admin/django_q/schedule/{stale.pk}/change/"
    page = admin_client.post(
        url,
        _schedule_post(
            stale, minutes=2, func="os.system", hook="os.system", args="'rm -rf /'"
        ),
    )
    assert page.status_code == 302, page.content[:3000]
    stale.refresh_from_db()
    assert stale.minutes == 2
    assert (stale.func, stale.hook, stale.args) == (
        "migration.tasks.runs_detect_stale",
        None,
        None,
    )
    [event] = _events("admin.django_q.schedule.changed")
    assert event.data["object"] == (
        "schedule 'pasportal: fail runs whose worker died' "
        "(migration.tasks.runs_detect_stale)"
    )
    assert event.data["change"][0]["changed"]["fields"] == ["Minutes"]
    assert event.actor["username"] == "admin"

    refused = admin_client.post(url, _schedule_post(stale, minutes=0))
    assert refused.status_code == 200
    assert "needs N of 1 or more" in refused.content.decode()
    stale.refresh_from_db()
    assert stale.minutes == 2

    assert admin_client.get("/admin/django_q/schedule/add/").status_code == 403
    gone = admin_client.post(
        f"/admin/django_q/schedule/{stale.pk}/delete/", {"post": "yes"}
    )
    assert gone.status_code == 403
    assert Schedule.objects.filter(pk=stale.pk).exists()
    assert verify_database().ok


def test_q2_task_results_cannot_be_resubmitted_or_edited_and_deletion_is_audited(
    admin_client: Any,
) -> None:
    """A run's task resubmitted from here would go round the run services."""
    from django.utils import timezone
    from django_q.models import Failure, OrmQ

    now = timezone.now()
    failed = Failure.objects.create(
        id="a" * 32,
        name="run-7",
        func="migration.tasks.run_execute",
        args=(7,),
        result="worker died",
        started=now,
        stopped=now,
        success=False,
    )
    listing = admin_client.get("/admin/django_q/failure/")
    assert listing.status_code == 200
    assert "resubmit_task" not in listing.content.decode()
    resubmit = admin_client.post(
        "/admin/django_q/failure/",
        {"action": "resubmit_task", "_selected_action": [failed.pk]},
    )
    assert resubmit.status_code == 302  # Django: "No action selected."
    assert OrmQ.objects.count() == 0 and Failure.objects.filter(pk=failed.pk).exists()
    edit = admin_client.post(
        f"/admin/django_q/failure/{failed.pk}/change/", {"result": "fine"}
    )
    assert edit.status_code == 403

    deleted = admin_client.post(
        "/admin/django_q/failure/",
        {"action": "delete_selected", "_selected_action": [failed.pk], "post": "yes"},
    )
    assert deleted.status_code == 302, deleted.content[:2000]
    assert not Failure.objects.filter(pk=failed.pk).exists()
    [event] = _events("admin.django_q.failure.deleted")
    assert event.data["object"] == "task 'run-7' (migration.tasks.run_execute)"
    assert "worker died" not in json.dumps(event.data)
    assert verify_database().ok


def test_the_orm_queue_is_read_only_in_the_admin(admin_client: Any) -> None:
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    queued = OrmQ.objects.create(
        key="pasportal",
        payload=SignedPackage.dumps(
            {"id": "b" * 32, "name": "run-8", "func": "migration.tasks.run_execute"}
        ),
        lock=None,
    )
    assert (
        admin_client.get(f"/admin/django_q/ormq/{queued.pk}/change/").status_code == 200
    )
    deleted = admin_client.post(
        f"/admin/django_q/ormq/{queued.pk}/delete/", {"post": "yes"}
    )
    assert deleted.status_code == 403
    assert OrmQ.objects.filter(pk=queued.pk).exists()
