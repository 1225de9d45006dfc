"""REST API v1 routes of integrations, mounted under `/api/v1/` by `portal.urls`."""

from django.urls import URLPattern, path  # noqa: F401

urlpatterns: list[URLPattern] = []
