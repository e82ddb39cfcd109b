"""GET /api/v1/jobs/{id}/deliveries: a job's webhook deliveries and every attempt."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.clients.models import ApiClient
from apps.core.api import ConveyorAPIView
from apps.core.api_docs import error_responses
from apps.jobs.selectors import job_get_for_client
from apps.webhooks.selectors import deliveries_for_job, delivery_to_dict

_ATTEMPT_FIELDS: dict[str, Any] = {
    "at": serializers.DateTimeField(),
    "status_code": serializers.IntegerField(allow_null=True),
    "latency_ms": serializers.FloatField(),
    "outcome": serializers.ChoiceField(choices=["delivered", "retry", "gone", "failed"]),
    "error": serializers.CharField(allow_null=True),
    "response_excerpt": serializers.CharField(),
}
_DELIVERY_FIELDS: dict[str, Any] = {
    "webhook_id": serializers.CharField(help_text="The webhook-id header; stable on retries."),
    "event_type": serializers.CharField(),
    "sequence": serializers.IntegerField(help_text="Increases with each event of the job."),
    "url": serializers.URLField(),
    "status": serializers.ChoiceField(
        choices=["pending", "delivered", "gone", "failed", "skipped"]
    ),
    "attempts": inline_serializer(name="WebhookAttempt", fields=_ATTEMPT_FIELDS, many=True),
    "next_attempt_at": serializers.DateTimeField(allow_null=True),
    "created_at": serializers.DateTimeField(),
    "delivered_at": serializers.DateTimeField(allow_null=True),
}


class JobDeliveriesView(ConveyorAPIView):
    @extend_schema(
        operation_id="jobs_deliveries",
        summary="A job's webhook deliveries and their attempts",
        responses={
            200: inline_serializer(
                name="WebhookDeliveryList",
                fields={
                    "results": inline_serializer(
                        name="WebhookDelivery", fields=_DELIVERY_FIELDS, many=True
                    )
                },
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request: Request, job_id: str) -> Response:
        client = cast(ApiClient, request.user)
        job = job_get_for_client(client_id=client.pk, job_id=job_id)
        return Response(
            {"results": [delivery_to_dict(d) for d in deliveries_for_job(job_id=job.pk)]}
        )
