from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from integrations.webhooks.sms import SmsWebhookView
from portal.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("tenants.api_urls")),
    path("api/v1/", include("integrations.api_urls")),
    path("api/v1/hooks/", include("integrations.webhook_urls")),
    path("api/v1/", include("integrations.callback_api_urls")),
    path("api/v1/", include("integrations.messaging_api_urls")),
    path("api/v1/", include("integrations.call_api_urls")),
    path("api/v1/", include("integrations.inbox_api_urls")),
    # Inbound SMS/MMS and delivery statuses from providers (DESIGN 4.6): the Ringotel URL form.
    re_path(
        r"^services/(?P<service_id>[^/]+)/a(?P<account_id>[0-9]+)/?$",
        SmsWebhookView.as_view(),
        name="sms-webhook",
    ),
    path("", include("integrations.urls")),
    path("", include("integrations.callback_urls")),
    path("", include("integrations.messaging_urls")),
    path("", include("tenants.urls")),
]

if settings.BENCH_BARE_VIEW:  # bench/webhook_ingest.py only: the baseline on the same server
    from django.http import HttpRequest, HttpResponse
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def bench_bare(request: HttpRequest) -> HttpResponse:
        """A bare Django view answering 200: what the webhook ingest is compared with."""
        return HttpResponse(b'{"status": "ok"}', content_type="application/json")

    urlpatterns.insert(0, path("bench/bare", bench_bare, name="bench-bare"))
