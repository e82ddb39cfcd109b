"""The webhooks app's routes under /api/v1/ (config/urls.py includes them beside the jobs')."""

from django.urls import path

from apps.webhooks.api import JobDeliveriesView

urlpatterns = [
    path("jobs/<str:job_id>/deliveries", JobDeliveriesView.as_view(), name="job-deliveries"),
]
