"""Routes of the migration API (registered on the root router in api_urls)."""

from __future__ import annotations

from typing import Any

from migration.api import views, views_mapping

ROUTES: list[tuple[str, Any, str]] = [
    ("snapshots", views_mapping.SnapshotViewSet, "snapshot"),
    ("mapping-sets", views_mapping.MappingSetViewSet, "mapping-set"),
    ("table-mappings", views_mapping.TableMappingViewSet, "table-mapping"),
    ("field-mappings", views_mapping.FieldMappingViewSet, "field-mapping"),
    ("exclusion-rules", views_mapping.ExclusionRuleViewSet, "exclusion-rule"),
    ("code-systems", views_mapping.CodeSystemViewSet, "code-system"),
    ("crosswalks", views_mapping.CrosswalkViewSet, "crosswalk"),
    ("crosswalk-rows", views_mapping.CrosswalkRowViewSet, "crosswalk-row"),
    ("miss-queue", views_mapping.MissQueueViewSet, "miss-queue"),
    ("contracts", views.ContractViewSet, "contract"),
    ("runs", views.RunViewSet, "run"),
]
