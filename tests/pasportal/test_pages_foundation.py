"""Login, dashboard, static assets served locally, CSRF for htmx, health check."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


def test_login_page_renders_with_local_nhsuk_and_htmx(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/vendor/nhsuk/nhsuk-frontend.min.css" in html
    assert "/static/vendor/htmx/htmx.min.js" in html
    assert "https://" not in html.split("<body")[0]  # nothing from a CDN
    assert 'hx-headers=\'{"X-CSRFToken"' in html
    # The assets are installed by make from npm and found by staticfiles.
    assert finders.find("vendor/nhsuk/nhsuk-frontend.min.css")
    assert finders.find("vendor/htmx/htmx.min.js")


def test_dashboard_requires_login(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_dashboard_lists_only_the_users_projects(
    client: Client, project: Any, other_project: Any, steward: Any
) -> None:
    client.force_login(steward)
    html = client.get("/").content.decode()
    assert project.name in html
    assert other_project.name not in html


def test_login_with_password_works(client: Client, steward: Any) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "steward.author", "password": "pw-steward.author"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_csrf_is_enforced_on_login_post(steward: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        "/accounts/login/",
        {"username": "steward.author", "password": "pw-steward.author"},
    )
    assert response.status_code == 403


def test_healthz_reports_database_and_broker(client: Client) -> None:
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["database"]["ok"] is True
    assert body["database"]["vendor"] == "postgresql"
    assert body["broker"]["ok"] is True
    assert body["broker"]["kind"] == "orm"
    assert "cluster_running" in body
    assert response["X-Request-ID"]
