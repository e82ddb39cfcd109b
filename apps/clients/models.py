"""API clients (tenants) and their hashed API keys."""

from __future__ import annotations

import base64
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def default_max_running_jobs() -> int | None:
    """A new client's cap on running jobs: the setting DEFAULT_MAX_RUNNING_JOBS (None: none)."""
    from django.conf import settings

    return getattr(settings, "DEFAULT_MAX_RUNNING_JOBS", None)


class ApiClient(models.Model):
    """A tenant. It sees only its own jobs, and its limits apply to all of its keys."""

    name = models.CharField(max_length=100, unique=True)
    is_active = models.BooleanField(
        default=True, help_text="Inactive clients' keys are refused with 401."
    )
    unlimited = models.BooleanField(
        default=False,
        help_text="Trusted client (internal service, load test): no rate limits or quotas.",
    )
    max_active_jobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most non-terminal jobs at once; empty means the deployment default.",
    )
    # Per-client rate limits, each a request count per window of the group's deployment rate
    # (settings.RATE_LIMITS, e.g. per minute); empty means that rate's count.
    rate_limit_submit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="POST requests (submit, batch, cancel, retry) per window of "
        "RATE_LIMITS['submit']; empty means the deployment default.",
    )
    rate_limit_read = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="GET /jobs/{id} and /job-types requests per window of RATE_LIMITS['read'];"
        " empty means the deployment default.",
    )
    rate_limit_list = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="GET /jobs requests per window of RATE_LIMITS['list'];"
        " empty means the deployment default.",
    )
    # Flow control (API.md, "Sharing the pools fairly").
    max_running_jobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=default_max_running_jobs,
        help_text="Most jobs running at once across all pools; empty means no cap.",
    )
    weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Share of a pool's workers against other clients with work waiting.",
    )
    webhook_secret = models.CharField(max_length=128, default=new_webhook_secret, editable=False)
    # During a rotation the previous secret keeps signing (beside the new one) until it expires.
    previous_webhook_secret = models.CharField(max_length=128, blank=True, editable=False)
    previous_webhook_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API client"
        # Staff roles (apps/staff). Creating a key is the built-in add_apikey.
        permissions = [("rotate_webhook_secret", "Can rotate a client's webhook secret")]

    def __str__(self) -> str:
        return self.name

    # DRF's IsAuthenticated asks request.user this; an authenticated request's user is its client.
    @property
    def is_authenticated(self) -> bool:
        return True


class ApiKey(models.Model):
    """An API key. Only its SHA-256 is stored; the plain key exists once, at creation."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(
        max_length=16, db_index=True, help_text="The key's first characters, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        permissions = [("revoke_apikey", "Can revoke API keys")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.client})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
