from django.urls import path

from apps.schedules.api import views

urlpatterns = [
    path("schedules", views.ScheduleCollectionView.as_view(), name="schedules"),
    path("schedules/<str:schedule_id>", views.ScheduleDetailView.as_view(), name="schedule-detail"),
    path(
        "schedules/<str:schedule_id>/trigger",
        views.ScheduleTriggerView.as_view(),
        name="schedule-trigger",
    ),
]
