"""Governance write services: projects and memberships. Each writes one audit event."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from governance import audit
from governance.models import MigrationProject, ProjectMembership
from governance.roles import ROLE_PERMISSIONS, Role, permissions_for


def role_groups_ensure() -> None:
    """Create one Django group per role (idempotent); groups carry no model perms."""
    for role in Role:
        Group.objects.get_or_create(name=role.value)


@transaction.atomic
def project_create(
    *, actor: Any, name: str, slug: str, description: str = "", ods_code: str = ""
) -> MigrationProject:
    """Create a project and audit it; raise ValidationError on a bad name or slug."""
    project = MigrationProject(
        name=name, slug=slug, description=description, ods_code=ods_code
    )
    project.full_clean()
    project.save()
    audit.record(
        actor=actor,
        action="governance.project.created",
        target=project,
        data={"name": name, "slug": slug},
    )
    return project


#: Project fields a change may touch, and whose new values its audit event keeps.
PROJECT_FIELDS = ("name", "slug", "description", "ods_code")


@transaction.atomic
def project_update(
    *, actor: Any, project: MigrationProject, **changes: str
) -> MigrationProject:
    """Change a project's name, slug, description or ODS code, and audit it.

    Raises ValidationError on a field that is not one of those or a bad
    value. Nothing changed: nothing saved, no event.
    """
    unknown = sorted(set(changes) - set(PROJECT_FIELDS))
    if unknown:
        raise ValidationError(
            {f: "not a field a project change may touch" for f in unknown}
        )
    project = MigrationProject.objects.select_for_update().get(pk=project.pk)
    before = {f: getattr(project, f) for f in changes}
    changed = sorted(f for f, value in changes.items() if before[f] != value)
    if not changed:
        return project
    for f in changed:
        setattr(project, f, changes[f])
    project.full_clean()
    project.save(update_fields=changed)
    audit.record(
        actor=actor,
        action="governance.project.updated",
        target=project,
        data={"changed": {f: [before[f], changes[f]] for f in changed}},
    )
    return project


def _sync_perms(project: MigrationProject, user: Any) -> None:
    roles = set(
        ProjectMembership.objects.filter(project=project, user=user).values_list(
            "role", flat=True
        )
    )
    wanted = permissions_for(roles)
    for perm in set().union(*ROLE_PERMISSIONS.values()):
        if perm in wanted:
            assign_perm(f"governance.{perm}", user, project)
        else:
            remove_perm(f"governance.{perm}", user, project)


@transaction.atomic
def membership_grant(
    *, actor: Any, project: MigrationProject, user: Any, role: str
) -> ProjectMembership:
    """Give ``user`` a role on ``project`` (idempotent) and the role's object perms."""
    if role not in Role.values:
        raise ValidationError(f"unknown role {role!r}")
    membership, created = ProjectMembership.objects.get_or_create(
        project=project, user=user, role=role
    )
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    _sync_perms(project, user)
    if created:
        audit.record(
            actor=actor,
            action="governance.membership.granted",
            target=project,
            data={"user": user.get_username(), "role": role},
        )
    return membership


@transaction.atomic
def membership_revoke(
    *, actor: Any, project: MigrationProject, user: Any, role: str
) -> None:
    """Remove a role from ``user`` on ``project`` and recompute their object perms."""
    deleted, _ = ProjectMembership.objects.filter(
        project=project, user=user, role=role
    ).delete()
    if not ProjectMembership.objects.filter(user=user, role=role).exists():
        user.groups.remove(*Group.objects.filter(name=role))
    _sync_perms(project, user)
    if deleted:
        audit.record(
            actor=actor,
            action="governance.membership.revoked",
            target=project,
            data={"user": user.get_username(), "role": role},
        )


def roles_of(*, user: Any, project: MigrationProject | int) -> set[str]:
    """Return the roles ``user`` holds on the project."""
    pk = project.pk if isinstance(project, MigrationProject) else project
    return set(
        ProjectMembership.objects.filter(project_id=pk, user=user).values_list(
            "role", flat=True
        )
    )
