from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from pasportal import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("pasportal.api_urls")),
    path("projects/<int:project_id>/", include("connectors.urls")),
    path("projects/<int:project_id>/", include("migration.urls")),
    path("projects/<int:project_id>/", include("governance.urls")),
]
