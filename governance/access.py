"""Per-object access helpers: the only way views and APIs fetch guarded objects.

Deny by default. A user sees a project only through guardian object
permissions granted by a membership; model-level permissions and superuser
status grant nothing here (``accept_global_perms=False``, ``with_superuser=False``),
so a global permission can never leak another project's objects.
Denial answers 404, so an outsider cannot even learn an object exists.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.http import Http404
from guardian.shortcuts import get_objects_for_user

from governance.models import MigrationProject
from governance.roles import VIEW

M = TypeVar("M", bound=models.Model)


def _codename(perm: str) -> str:
    return perm.split(".", 1)[1] if "." in perm else perm


def projects_for_user(user: Any, perm: str = VIEW) -> models.QuerySet[MigrationProject]:
    """Return the projects on which ``user`` holds ``perm`` (object permission)."""
    if not getattr(user, "is_authenticated", False) or not getattr(
        user, "is_active", False
    ):
        return MigrationProject.objects.none()
    return get_objects_for_user(
        user,
        f"governance.{_codename(perm)}",
        klass=MigrationProject,
        accept_global_perms=False,
        with_superuser=False,
    )


def user_has_project_perm(
    user: Any, project: MigrationProject | int, perm: str
) -> bool:
    """Return True if ``user`` holds ``perm`` on the project."""
    pk = project.pk if isinstance(project, MigrationProject) else project
    return projects_for_user(user, perm).filter(pk=pk).exists()


def access_project(user: Any, pk: Any, perm: str = VIEW) -> MigrationProject:
    """Return the project if ``user`` holds ``perm`` on it; raise Http404 otherwise."""
    try:
        return projects_for_user(user, perm).get(pk=pk)
    except (MigrationProject.DoesNotExist, ValueError, TypeError):
        raise Http404("No such project") from None


def scoped(
    user: Any,
    queryset: models.QuerySet[M],
    perm: str = VIEW,
    project_field: str = "project",
) -> models.QuerySet[M]:
    """Return ``queryset`` limited to objects of projects where ``user`` holds ``perm``."""
    return queryset.filter(**{f"{project_field}__in": projects_for_user(user, perm)})


def access_object(
    user: Any,
    queryset: models.QuerySet[M],
    pk: Any,
    perm: str = VIEW,
    project_field: str = "project",
) -> M:
    """Return the object ``pk`` of ``queryset`` if ``user`` holds ``perm`` on its project.

    Raises Http404 when it does not exist or the user may not see it.
    """
    try:
        return scoped(user, queryset, perm, project_field).get(pk=pk)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None
