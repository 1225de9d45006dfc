"""The property form generated from a spec: every property type, the seed's string-list form,
secrets masked / never rendered back / kept when blank / encrypted at rest."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.test import Client
from django.urls import reverse

from integrations.engine.spec import load_spec
from integrations.forms import PropertyForm
from integrations.models import Installation
from integrations.services import installation_create
from tests.integrations.portal.portal_support import (
    API_KEY_SECRET,
    approved_version,
    bearer_crm_document,
    raw_installation_column,
)
from tests.tenants.conftest import Tenant

EVERY_TYPE_DOCUMENT: dict[str, Any] = bearer_crm_document(
    "every-type-crm",
    properties=[
        {"name": "Base URL", "type": "url", "required": True, "help": "Where the API is."},
        {"name": "API Key", "type": "secret", "required": True},
        {"name": "Account Name", "type": "string", "required": False, "default": "main"},
        {"name": "Timeout", "type": "number", "required": False, "default": 15},
        {"name": "Sandbox Mode", "type": "boolean", "default": True},
        {
            "name": "Region",
            "type": "choice",
            "required": True,
            "choices": ["us", "eu", {"value": "in", "label": "India"}],
            "default": "eu",
        },
    ],
)

SEED_STRING_LIST_DOCUMENT: dict[str, Any] = bearer_crm_document(
    "seed-style-crm",
    properties=["Instance URL", "Client ID", "Client Secret"],
    resource_url="$Instance URL$",
    authentication={"type": "bearer", "token": "$Client Secret$"},
)


def _fields(document: dict[str, Any], **kwargs: Any) -> dict[str, forms.Field]:
    form = PropertyForm(spec=load_spec(document), **kwargs)
    return {form.field_names[name]: field for name, field in form.fields.items()}


def test_every_property_type_gets_its_field() -> None:
    fields = _fields(EVERY_TYPE_DOCUMENT)

    assert isinstance(fields["Base URL"], forms.URLField)
    assert fields["Base URL"].required and fields["Base URL"].help_text == "Where the API is."
    assert isinstance(fields["API Key"].widget, forms.PasswordInput)
    assert fields["API Key"].required
    assert isinstance(fields["Account Name"], forms.CharField)
    assert not fields["Account Name"].required and fields["Account Name"].initial == "main"
    assert isinstance(fields["Timeout"], forms.FloatField) and fields["Timeout"].initial == 15
    assert isinstance(fields["Sandbox Mode"], forms.BooleanField)
    assert fields["Sandbox Mode"].initial is True
    assert isinstance(fields["Region"], forms.ChoiceField)
    assert [value for value, _ in fields["Region"].choices] == ["us", "eu", "in"]
    assert fields["Region"].initial == "eu"


def test_seed_string_list_properties_are_required_text_with_the_secret_masked() -> None:
    fields = _fields(SEED_STRING_LIST_DOCUMENT)

    assert list(fields) == ["Instance URL", "Client ID", "Client Secret"]
    assert all(field.required for field in fields.values())
    assert all(isinstance(field, forms.CharField) for field in fields.values())
    assert isinstance(fields["Client Secret"].widget, forms.PasswordInput)
    assert not isinstance(fields["Client ID"].widget, forms.PasswordInput)
    assert [field.label for field in fields.values()] == list(fields)


def test_form_values_are_typed_and_split_into_plain_and_secret() -> None:
    spec = load_spec(EVERY_TYPE_DOCUMENT)
    form = PropertyForm(
        {
            "prop_0": "https://crm.example.com",
            "prop_1": "s3cret-api-key",
            "prop_2": "",
            "prop_3": "20",
            "prop_4": "",
            "prop_5": "in",
        },
        spec=spec,
    )

    assert form.is_valid(), form.errors
    plain, secret = form.property_values()
    assert plain == {
        "Base URL": "https://crm.example.com",
        "Timeout": 20,
        "Sandbox Mode": False,
        "Region": "in",
    }
    # A whole number stays whole: sent as 20, never "20.0".
    assert type(plain["Timeout"]) is int
    assert secret == {"API Key": "s3cret-api-key"}


def test_a_fractional_number_stays_a_float() -> None:
    form = PropertyForm(
        {"prop_0": "https://crm.example.com", "prop_1": "k", "prop_3": "2.5", "prop_5": "us"},
        spec=load_spec(EVERY_TYPE_DOCUMENT),
    )

    assert form.is_valid(), form.errors
    assert form.property_values()[0]["Timeout"] == 2.5


def test_choice_labels_are_shown_and_values_are_stored() -> None:
    form = PropertyForm(spec=load_spec(EVERY_TYPE_DOCUMENT))
    region = form.fields["prop_5"]

    assert list(region.choices) == [("us", "us"), ("eu", "eu"), ("in", "India")]
    html = str(form["prop_5"])
    assert '<option value="in">India</option>' in html


PAGE_SIZE_DOCUMENT: dict[str, Any] = bearer_crm_document(
    "page-size-crm",
    properties=[
        {"name": "Base URL", "type": "url", "required": True},
        {"name": "API Key", "type": "secret", "required": True},
        {"name": "Page Size", "type": "number", "required": True},
    ],
    API={
        **bearer_crm_document()["API"],
        "Users": {
            **bearer_crm_document()["API"]["Users"],
            "request_path": "/users",
            "request_parameters": {"limit": "$Page Size$"},
        },
    },
)


@pytest.mark.django_db
def test_a_number_typed_in_the_form_is_sent_as_typed(
    client: Client, tenant_a: Tenant, crm_server: Any, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    version = approved_version(PAGE_SIZE_DOCUMENT)
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("integrations:installation_create", args=[tenant_a.org.pk, version.spec_id]),
        {
            "prop_0": crm_server.url,
            "prop_1": API_KEY_SECRET,
            "prop_2": "20",
            "label": "",
            "match_policy": "recent",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    installation = Installation.objects.get(organization=tenant_a.org)
    assert installation.properties["Page Size"] == 20
    assert type(installation.properties["Page Size"]) is int
    verified = crm_server.requests_to("/users", "GET")
    assert [request.args().get("limit") for request in verified] == ["20"]


def test_urls_and_choices_are_validated() -> None:
    form = PropertyForm(
        {"prop_0": "not a url at all", "prop_1": "k", "prop_5": "mars"},
        spec=load_spec(EVERY_TYPE_DOCUMENT),
    )

    assert not form.is_valid()
    assert "prop_0" in form.errors and "prop_5" in form.errors


@pytest.mark.django_db
def test_enable_page_renders_every_field_from_the_spec(client: Client, tenant_a: Tenant) -> None:
    version = approved_version(EVERY_TYPE_DOCUMENT)
    client.force_login(tenant_a.reseller)

    page = client.get(
        reverse("integrations:installation_create", args=[tenant_a.org.pk, version.spec_id])
    ).content.decode()

    for label in ("Base URL", "API Key", "Account Name", "Timeout", "Sandbox Mode", "Region"):
        assert label in page
    assert 'type="password"' in page and 'type="url"' in page and 'type="checkbox"' in page
    assert "<select" in page and 'name="match_policy"' in page


@pytest.fixture
def installed(tenant_a: Tenant, crm_server: Any, settings: Any) -> Installation:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    version = approved_version(bearer_crm_document())
    return installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=version,
        properties={"Base URL": crm_server.url},
        secret_properties={"API Key": API_KEY_SECRET},
    )


@pytest.mark.django_db
def test_secret_is_never_rendered_back(client: Client, tenant_a: Tenant, installed: Any) -> None:
    client.force_login(tenant_a.reseller)

    for name in ("installation_edit", "installation_detail"):
        page = client.get(reverse(f"integrations:{name}", args=[installed.pk])).content.decode()
        assert API_KEY_SECRET not in page, name
        assert "stored" in page


@pytest.mark.django_db
def test_blank_secret_on_edit_keeps_the_stored_one(
    client: Client, tenant_a: Tenant, installed: Installation, crm_server: Any
) -> None:
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("integrations:installation_edit", args=[installed.pk]),
        {"prop_0": crm_server.url, "prop_1": "", "label": "Main CRM", "match_policy": "owner"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    installed.refresh_from_db()
    assert installed.secret_properties == {"API Key": API_KEY_SECRET}
    assert installed.label == "Main CRM" and installed.match_policy == "owner"


@pytest.mark.django_db
def test_secrets_are_encrypted_at_rest(installed: Installation) -> None:
    raw = raw_installation_column(installed.pk, "secret_properties")

    assert raw and API_KEY_SECRET not in raw
    assert Installation.objects.get(pk=installed.pk).secret_properties == {
        "API Key": API_KEY_SECRET
    }


@pytest.mark.django_db
def test_the_installation_page_shows_a_choices_label(client: Client, tenant_a: Tenant) -> None:
    installation = Installation.objects.create(
        organization=tenant_a.org,
        spec_version=approved_version(EVERY_TYPE_DOCUMENT),
        properties={"Base URL": "https://crm.example.com", "Region": "in"},
        secret_properties={"API Key": API_KEY_SECRET},
    )
    client.force_login(tenant_a.reseller)

    page = client.get(reverse("integrations:installation_detail", args=[installation.pk]))

    assert "India" in page.content.decode()
    edit = client.get(reverse("integrations:installation_edit", args=[installation.pk]))
    assert '<option value="in" selected>India</option>' in edit.content.decode()
