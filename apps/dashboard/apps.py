from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "apps.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        from django.contrib import admin

        # The admin's index is the operator dashboard (apps/dashboard/views.py), above the list
        # of what staff may open.
        admin.site.index_template = "dashboard/index.html"
        admin.site.site_header = "Conveyor operations"
        admin.site.site_title = "Conveyor admin"
        admin.site.index_title = "Dashboard"
