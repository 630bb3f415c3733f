"""Roles and the object permissions each grants on a project.

A role is a Django group (so admins see who is what) and, per project, a set of
guardian object permissions on that project: the project is the root of every
object permission in the product. Groups themselves carry no model-level
permissions, so nothing leaks to a role holder outside their projects.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    DM_ENGINEER = "dm_engineer", "DM engineer"
    DATA_STEWARD = "data_steward", "Clinical data steward"
    MIGRATION_LEAD = "migration_lead", "Migration lead"
    IG_LEAD = "ig_lead", "IG lead"
    CLINICAL_SAFETY_OFFICER = "clinical_safety_officer", "Clinical safety officer"
    AUDITOR = "auditor", "Auditor"
    VIEWER = "viewer", "Viewer"


# Object permissions defined on MigrationProject (codename, description).
PROJECT_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("view_pid", "See patient-identifiable values unmasked"),
    ("manage_connectors", "Register, change and test connectors"),
    ("extract_schema", "Extract and profile source schemas"),
    ("edit_mapping", "Author mappings and crosswalk rows"),
    ("review_mapping", "Approve, flag or reject mappings and crosswalk rows"),
    ("publish_contract", "Publish an approved mapping set as a contract"),
    ("start_run", "Start, cancel and resume runs"),
    ("evaluate_gate", "Evaluate release gates"),
    ("approve_waiver", "Approve gate waivers"),
    ("sign_off", "Record a sign-off in one's role"),
    ("view_audit", "Read the project's audit trail"),
    ("export_evidence", "Export evidence bundles"),
)

VIEW = "view_migrationproject"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.DM_ENGINEER: frozenset(
        {
            VIEW,
            "manage_connectors",
            "extract_schema",
            "edit_mapping",
            "publish_contract",
            "start_run",
            "evaluate_gate",
        }
    ),
    Role.DATA_STEWARD: frozenset(
        {VIEW, "edit_mapping", "review_mapping", "sign_off", "view_pid"}
    ),
    Role.MIGRATION_LEAD: frozenset(
        {
            VIEW,
            "publish_contract",
            "start_run",
            "evaluate_gate",
            "approve_waiver",
            "sign_off",
            "view_audit",
        }
    ),
    Role.IG_LEAD: frozenset({VIEW, "sign_off", "view_audit", "approve_waiver"}),
    Role.CLINICAL_SAFETY_OFFICER: frozenset(
        {VIEW, "sign_off", "approve_waiver", "evaluate_gate"}
    ),
    Role.AUDITOR: frozenset({VIEW, "view_audit", "export_evidence"}),
    Role.VIEWER: frozenset({VIEW}),
}


def permissions_for(roles: set[str] | frozenset[str]) -> frozenset[str]:
    """Return the union of the object permissions granted by ``roles``."""
    result: set[str] = set()
    for role in roles:
        result |= ROLE_PERMISSIONS[role]
    return frozenset(result)
