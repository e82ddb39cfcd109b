"""The audit log of the admin: one row per staff write (action, add, change, delete), refused
ones included. Append-only: the admin shows it to every staff role and lets nobody edit it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AdminAuditEntry(models.Model):
    """Who did what to which objects through the admin, and how it went.

    Never holds a secret: outcomes name keys by row id, never by value, and changes by field
    name, never by content. ``username`` outlives the user row (``user`` is set to null when a
    staff account is deleted). ``object_ids`` keeps the first ``MAX_OBJECT_IDS`` ids of the
    selection; ``object_count`` is the size of the whole selection.
    """

    MAX_OBJECT_IDS = 100

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    username = models.CharField(max_length=150)
    action = models.CharField(
        max_length=100, help_text="The admin action's name, or add, change, delete."
    )
    model = models.CharField(max_length=100, help_text="app_label.model of the objects.")
    object_ids = models.JSONField(default=list, blank=True)
    object_count = models.PositiveIntegerField(default=0)
    denied = models.BooleanField(
        default=False, help_text="Refused for want of permission (403); nothing was changed."
    )
    outcome = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "admin audit entry"
        verbose_name_plural = "admin audit log"
        indexes = [
            models.Index(fields=["user", "-at"], name="audit_user_at"),
            models.Index(fields=["action", "-at"], name="audit_action_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.model}"
