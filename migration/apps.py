from __future__ import annotations

from django.apps import AppConfig


class MigrationConfig(AppConfig):
    name = "migration"
    verbose_name = "Migration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from migration import receivers  # noqa: F401  (connects signal receivers)
        from migration.schedules import schedules_ensure

        post_migrate.connect(schedules_ensure, sender=self)
