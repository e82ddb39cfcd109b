"""Conveyor's Python client: ``Client``, ``AsyncClient``, their errors and ``verify_webhook``.

from conveyor_client import Client
with Client("https://jobs.example.com", api_key) as conveyor:
    job = conveyor.submit("diagnostics.echo", {"message": "hi"})
    print(conveyor.wait(job.id, timeout=60).result)
"""

from conveyor_client._core import RetryPolicy, SubmitOptions
from conveyor_client._version import API_VERSION, __version__
from conveyor_client.aio import AsyncClient
from conveyor_client.client import Client
from conveyor_client.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    ConnectionFailed,
    ConveyorError,
    IdempotencyConflict,
    IdempotencyInProgress,
    InternalError,
    InvalidState,
    LimitReached,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
)
from conveyor_client.models import (
    TERMINAL_STATUSES,
    Job,
    JobError,
    JobType,
    Progress,
    Schedule,
    WebhookEvent,
)
from conveyor_client.webhooks import verify_webhook

__all__ = [
    "API_VERSION",
    "TERMINAL_STATUSES",
    "AlreadyExists",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "ConveyorError",
    "IdempotencyConflict",
    "IdempotencyInProgress",
    "InternalError",
    "InvalidState",
    "Job",
    "JobError",
    "JobType",
    "LimitReached",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Progress",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "Schedule",
    "ServerError",
    "ServiceUnavailable",
    "SubmitOptions",
    "UnsupportedMediaType",
    "ValidationError",
    "WaitTimeout",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
