"""Remove object permissions when their object goes.

guardian stores object permissions by (content type, primary key); if a row is
deleted and its key reused, stale permissions would silently reapply to the
new row. So every delete of a model in our apps clears them.
"""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_delete
from django.dispatch import receiver
from guardian.models import GroupObjectPermission, UserObjectPermission

OWN_APPS = {"governance", "connectors", "migration"}


@receiver(post_delete)
def remove_object_permissions(sender: Any, instance: Any, **kwargs: Any) -> None:
    meta = getattr(sender, "_meta", None)
    if meta is None or meta.app_label not in OWN_APPS:
        return
    if meta.model_name in {"auditevent", "auditchainhead"}:
        return
    content_type = ContentType.objects.get_for_model(sender)
    filters = {"content_type": content_type, "object_pk": str(instance.pk)}
    UserObjectPermission.objects.filter(**filters).delete()
    GroupObjectPermission.objects.filter(**filters).delete()
