"""Migration pages, mounted under ``projects/<int:project_id>/``."""

from __future__ import annotations

from django.urls import path

from migration import views

app_name = "migration"

urlpatterns = [
    # schema snapshots
    path(
        "connectors/<int:connector_id>/snapshots/",
        views.snapshot_list,
        name="snapshot-list",
    ),
    path(
        "connectors/<int:connector_id>/snapshots/new/",
        views.snapshot_create,
        name="snapshot-create",
    ),
    path(
        "connectors/<int:connector_id>/snapshots/jobs/<slug:job_id>/",
        views.snapshot_job_view,
        name="snapshot-job",
    ),
    path("snapshots/<int:snapshot_id>/", views.snapshot_detail, name="snapshot-detail"),
    path("snapshots/diff/", views.snapshot_diff_view, name="snapshot-diff"),
    path(
        "snapshots/<int:snapshot_id>/suggest/",
        views.mappingset_suggest,
        name="mappingset-suggest",
    ),
    path(
        "snapshots/<int:snapshot_id>/import-default/",
        views.mappingset_import,
        name="mappingset-import",
    ),
    # mappings
    path("mappings/", views.mappingset_list, name="mappingset-list"),
    path("mappings/<int:set_id>/", views.mappingset_detail, name="mappingset-detail"),
    path(
        "mappings/<int:set_id>/publish/",
        views.mappingset_publish,
        name="mappingset-publish",
    ),
    path(
        "mappings/<int:set_id>/tables/<int:tm_id>/",
        views.tablemapping_detail,
        name="tablemapping-detail",
    ),
    path(
        "mappings/<int:set_id>/tables/<int:tm_id>/approve/",
        views.fieldmapping_bulk,
        name="fieldmapping-bulk",
    ),
    path(
        "mappings/<int:set_id>/tables/<int:tm_id>/fields/new/",
        views.fieldmapping_create,
        name="fieldmapping-create",
    ),
    path(
        "mappings/<int:set_id>/tables/<int:tm_id>/exclusions/",
        views.exclusionrule_create,
        name="exclusionrule-create",
    ),
    path(
        "exclusion-rules/<int:rule_id>/review/",
        views.exclusionrule_review,
        name="exclusionrule-review",
    ),
    path(
        "fields/<int:fm_id>/review/",
        views.fieldmapping_review,
        name="fieldmapping-review",
    ),
    path(
        "fields/<int:fm_id>/edit/",
        views.fieldmapping_edit,
        name="fieldmapping-edit",
    ),
    path(
        "fields/<int:fm_id>/step-args/",
        views.fieldmapping_step_args,
        name="fieldmapping-step-args",
    ),
    path(
        "fields/<int:fm_id>/rationale/",
        views.fieldmapping_rationale,
        name="fieldmapping-rationale",
    ),
    path(
        "fields/<int:fm_id>/preview/",
        views.fieldmapping_preview,
        name="fieldmapping-preview",
    ),
    # crosswalks and the miss queue
    path("crosswalks/", views.crosswalk_list, name="crosswalk-list"),
    path("crosswalks/seed/", views.crosswalks_seed, name="crosswalks-seed"),
    path("crosswalks/<int:xw_id>/", views.crosswalk_detail, name="crosswalk-detail"),
    path(
        "crosswalks/<int:xw_id>/export.csv",
        views.crosswalk_export,
        name="crosswalk-export",
    ),
    path(
        "crosswalks/<int:xw_id>/import/",
        views.crosswalk_import,
        name="crosswalk-import",
    ),
    path(
        "crosswalk-rows/<int:row_id>/rationale/",
        views.crosswalkrow_rationale,
        name="crosswalkrow-rationale",
    ),
    path(
        "crosswalk-rows/<int:row_id>/review/",
        views.crosswalkrow_review,
        name="crosswalkrow-review",
    ),
    path("misses/", views.miss_list, name="miss-list"),
    path("misses/<int:miss_id>/resolve/", views.miss_resolve, name="miss-resolve"),
    path(
        "misses/<int:miss_id>/ignore/",
        views.miss_ignore,
        name="miss-ignore",
    ),
    path(
        "misses/<int:miss_id>/reopen/",
        views.miss_reopen,
        name="miss-reopen",
    ),
    # runs
    path("runs/", views.run_list, name="run-list"),
    path("runs/new/", views.run_create, name="run-create"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/progress/", views.run_progress, name="run-progress"),
    path("runs/<int:run_id>/cancel/", views.run_cancel_view, name="run-cancel"),
    path("runs/<int:run_id>/resume/", views.run_resume_view, name="run-resume"),
    path("runs/<int:run_id>/rejects/", views.reject_list, name="reject-list"),
    path(
        "runs/<int:run_id>/rejects.csv",
        views.reject_download,
        name="reject-download",
    ),
]
