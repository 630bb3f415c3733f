"""Connector pages, mounted under ``projects/<int:project_id>/``."""

from __future__ import annotations

from django.urls import path

from connectors import views

app_name = "connectors"

urlpatterns = [
    path("connectors/", views.connector_list, name="connector-list"),
    path(
        "connectors/<int:connector_id>/",
        views.connector_detail,
        name="connector-detail",
    ),
    path(
        "connectors/<int:connector_id>/check/",
        views.connector_check_view,
        name="connector-check",
    ),
    path(
        "connectors/<int:connector_id>/landing/purge/",
        views.connector_purge_landing_view,
        name="connector-landing-purge",
    ),
]
