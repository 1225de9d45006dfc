"""Django admin: every model of tenants and integrations is registered, and its list (with a
search and each filter), its change page and its history load for a superuser, with a row
made by the model's factory. Encrypted secrets never appear on those pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.filters import FieldListFilter, SimpleListFilter
from django.test import Client
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db

# The factory of each model (tests/factories.py has one for every model).
FACTORIES: dict[str, Any] = {
    "tenants.Account": factories.AccountFactory,
    "tenants.Organization": factories.OrganizationFactory,
    "tenants.PbxUser": factories.PbxUserFactory,
    "tenants.SmsNumber": factories.SmsNumberFactory,
    "tenants.Membership": factories.ResellerMembershipFactory,
    "integrations.IntegrationSpec": factories.IntegrationSpecFactory,
    "integrations.SpecVersion": factories.SpecVersionFactory,
    "integrations.Installation": factories.InstallationFactory,
    "integrations.OAuthState": factories.OAuthStateFactory,
    "integrations.CrmUser": factories.CrmUserFactory,
    "integrations.UserMapping": factories.UserMappingFactory,
    "integrations.UserFetch": factories.UserFetchFactory,
    "integrations.DeliveryLogEntry": factories.DeliveryLogEntryFactory,
    "integrations.Notice": factories.NoticeFactory,
    "integrations.Call": factories.CallFactory,
    "integrations.CallActivity": factories.CallActivityFactory,
    "integrations.Message": factories.MessageFactory,
    "integrations.InboxEvent": factories.InboxEventFactory,
    "integrations.CallbackSubscription": factories.CallbackSubscriptionFactory,
    "integrations.CallbackDelivery": factories.CallbackDeliveryFactory,
}
# Secrets the factories store (encrypted): no admin page may show them.
SECRETS = (
    "factory-api-key",
    "factory-basic-password",
    "whsec_ZmFjdG9yeS1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5",
    "admin-test-access-token",
)

MODELS = [
    model
    for label in ("tenants", "integrations")
    for model in apps.get_app_config(label).get_models()
]


@pytest.fixture
def superuser_client(client: Client) -> Client:
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    return client


def test_every_model_has_a_factory_and_an_admin() -> None:
    labels = {model._meta.label for model in MODELS}

    assert labels == set(FACTORIES), "add the new model to FACTORIES (and tests/factories.py)"
    unregistered = [m._meta.label for m in MODELS if not admin.site.is_registered(m)]
    assert not unregistered, f"register in admin: {unregistered}"


def _filter_params(model_admin: admin.ModelAdmin, request: Any) -> list[dict[str, str]]:
    """One query per list filter that narrows the list (its first real choice)."""
    changelist = model_admin.get_changelist_instance(request)
    queries = []
    for spec in changelist.filter_specs:
        if isinstance(spec, FieldListFilter | SimpleListFilter):
            for choice in spec.choices(changelist):
                query = choice.get("query_string", "")
                if choice.get("selected") or not query or query == "?":
                    continue
                queries.append(query)
                break
    return queries


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_the_admin_pages_of_every_model_load_for_a_superuser(
    superuser_client: Client, model: Any, rf: Any
) -> None:
    obj = FACTORIES[model._meta.label]()
    if model._meta.label == "integrations.Installation":
        obj.tokens = {"access_token": "admin-test-access-token"}
        obj.save()
    info = (model._meta.app_label, model._meta.model_name)
    changelist_url = reverse("admin:{}_{}_changelist".format(*info))
    model_admin = admin.site._registry[model]

    listed = superuser_client.get(changelist_url)
    searched = superuser_client.get(changelist_url, {"q": "1"})
    changed = superuser_client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
    history = superuser_client.get(reverse("admin:{}_{}_history".format(*info), args=[obj.pk]))

    assert listed.status_code == 200
    assert obj.pk in {row.pk for row in listed.context["cl"].result_list}
    assert searched.status_code == 200
    assert changed.status_code == 200
    assert history.status_code == 200
    request = rf.get(changelist_url)
    request.user = listed.wsgi_request.user
    for query in _filter_params(model_admin, request):
        filtered = superuser_client.get(changelist_url + query)
        assert filtered.status_code == 200, query
    for response in (listed, changed):
        page = response.content.decode()
        assert not [secret for secret in SECRETS if secret in page]
