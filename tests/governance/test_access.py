"""Object permissions: project membership grants role perms; nothing else does."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.http import Http404

from governance.access import access_project, projects_for_user, user_has_project_perm
from governance.models import AuditEvent, MigrationProject
from governance.roles import ROLE_PERMISSIONS, Role
from governance.services import membership_grant, membership_revoke, project_create

pytestmark = pytest.mark.django_db


def test_members_see_their_project_and_outsiders_get_404(
    project: Any, other_project: Any, steward: Any, other_steward: Any, outsider: Any
) -> None:
    assert list(projects_for_user(steward)) == [project]
    assert access_project(steward, project.pk) == project
    for user, pk in [
        (steward, other_project.pk),
        (other_steward, project.pk),
        (outsider, project.pk),
    ]:
        with pytest.raises(Http404):
            access_project(user, pk)
    with pytest.raises(Http404):
        access_project(steward, "not-a-number")


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_holds_exactly_its_permissions(
    project: Any, make_user: Any, role: str
) -> None:
    user = make_user(f"u-{role}")
    membership_grant(actor="tests", project=project, user=user, role=role)
    all_perms = set().union(*ROLE_PERMISSIONS.values())
    for perm in all_perms:
        assert user_has_project_perm(user, project, perm) == (
            perm in ROLE_PERMISSIONS[role]
        )


def test_model_level_permission_and_superuser_grant_no_objects(
    project: Any, make_user: Any
) -> None:
    """S3: a global permission must not leak objects (accept_global_perms=False)."""
    holder = make_user("global-holder")
    holder.user_permissions.add(
        Permission.objects.get(codename="view_migrationproject"),
        Permission.objects.get(codename="review_mapping"),
    )
    assert holder.has_perm("governance.view_migrationproject")  # globally, yes
    assert projects_for_user(holder).count() == 0
    assert not user_has_project_perm(holder, project, "review_mapping")
    boss = make_user("root", is_superuser=True)
    assert projects_for_user(boss).count() == 0


def test_revoking_a_role_removes_its_permissions(project: Any, steward: Any) -> None:
    assert user_has_project_perm(steward, project, "review_mapping")
    membership_grant(actor="tests", project=project, user=steward, role="viewer")
    membership_revoke(actor="tests", project=project, user=steward, role="data_steward")
    assert not user_has_project_perm(steward, project, "review_mapping")
    assert user_has_project_perm(steward, project, "view_migrationproject")
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "governance.membership.revoked" in actions


def test_inactive_users_see_nothing(project: Any, steward: Any) -> None:
    steward.is_active = False
    steward.save()
    assert projects_for_user(steward).count() == 0


def test_permissions_are_removed_when_the_object_is_deleted(
    project: Any, steward: Any
) -> None:
    """A reused primary key must not inherit a deleted project's permissions."""
    pk = project.pk
    MigrationProject.objects.filter(pk=pk).delete()
    reborn = MigrationProject.objects.create(pk=pk, name="Reborn", slug="reborn")
    assert not user_has_project_perm(steward, reborn, "view_migrationproject")


def test_services_write_audit_events(db: Any, make_user: Any) -> None:
    project = project_create(actor="tests", name="Audited", slug="audited")
    user = make_user("someone")
    membership_grant(actor="tests", project=project, user=user, role="auditor")
    membership_grant(actor="tests", project=project, user=user, role="auditor")  # no-op
    events = list(
        AuditEvent.objects.filter(project_id=project.pk).values_list(
            "action", flat=True
        )
    )
    assert events == ["governance.project.created", "governance.membership.granted"]
