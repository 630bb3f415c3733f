from __future__ import annotations

from django.apps import AppConfig


class MigrationConfig(AppConfig):
    name = "migration"
    verbose_name = "Migration"
    default_auto_field = "django.db.models.BigAutoField"
