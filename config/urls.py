from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from apps.core import views as core_views
from apps.dashboard.views import dashboard_data

urlpatterns = [
    path("api/v1/", include("apps.jobs.api.urls")),
    path("api/v1/", include("apps.webhooks.urls")),
    path("api/v1/", include("apps.schedules.urls")),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
    path("admin/dashboard.json", dashboard_data, name="conveyor-dashboard-data"),
    path("admin/", admin.site.urls),
]

if settings.BENCHMARK_ENDPOINTS:
    urlpatterns.append(path("api/v1/_bench/constant", core_views.BenchConstantView.as_view()))

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
