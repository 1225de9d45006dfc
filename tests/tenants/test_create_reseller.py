"""`manage.py create_reseller`: a real reseller account and a login that runs it."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from tenants.models import Account, Membership, Organization

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-and-unusual-passphrase-42"


def _create(monkeypatch: pytest.MonkeyPatch, password: str = PASSWORD, **options: str) -> str:
    monkeypatch.setenv("RESELLER_PASSWORD", password)
    out = io.StringIO()
    call_command(
        "create_reseller",
        account=options.pop("account", "Northwind Telecom"),
        username=options.pop("username", "nina"),
        password_env="RESELLER_PASSWORD",
        stdout=out,
        **options,
    )
    return out.getvalue()


def test_the_new_reseller_admin_logs_in_and_creates_an_organization(
    monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    out = _create(monkeypatch, email="nina@northwind.example")

    account = Account.objects.get(slug="northwind-telecom")
    assert "nina is now reseller admin of Northwind Telecom (northwind-telecom)" in out
    assert "/login/" in out
    login = client.post(reverse("login"), {"username": "nina", "password": PASSWORD})
    assert login.status_code == 302
    client.post(reverse("organization_create"), {"name": "First Customer", "default_region": "US"})
    assert Organization.objects.get(name="First Customer").account == account


def test_a_second_admin_joins_the_existing_account(monkeypatch: pytest.MonkeyPatch) -> None:
    _create(monkeypatch)
    _create(monkeypatch, username="omar", account="ignored", account_slug="northwind-telecom")

    assert Account.objects.count() == 1
    assert set(
        Membership.objects.filter(role=Membership.Role.RESELLER).values_list(
            "user__username", flat=True
        )
    ) == {"nina", "omar"}


def test_a_weak_password_or_a_taken_username_creates_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(CommandError, match=r"Nothing was created\. password: This password is"):
        _create(monkeypatch, password="password")
    assert not Account.objects.exists()

    _create(monkeypatch)
    with pytest.raises(CommandError, match="'nina' is already a portal login"):
        _create(monkeypatch, account="Other Reseller")
    assert not Account.objects.filter(name="Other Reseller").exists()


def test_an_unset_password_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESELLER_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="RESELLER_PASSWORD is empty or unset"):
        call_command("create_reseller", account="X", username="x", password_env="RESELLER_PASSWORD")
