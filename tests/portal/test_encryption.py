from __future__ import annotations

import io

from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from tenants.models import Organization
from tests.factories import OrganizationFactory


def _raw_secret_column(org_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM tenants_organization WHERE id = %s", [org_id])
        return cursor.fetchone()[0]


def test_webhook_secret_column_does_not_contain_the_plaintext(db):
    org = OrganizationFactory()
    org.webhook_secret = "s3cret-value-that-must-not-leak"
    org.save()

    raw = _raw_secret_column(org.pk)

    assert "s3cret-value-that-must-not-leak" not in raw
    assert Organization.objects.get(pk=org.pk).webhook_secret == "s3cret-value-that-must-not-leak"


def test_every_organization_gets_its_own_random_secret(db):
    first, second = OrganizationFactory(), OrganizationFactory()

    assert len(first.webhook_secret) >= 32
    assert first.webhook_secret != second.webhook_secret


def test_rotation_re_encrypts_under_the_new_key_and_keeps_values_readable(db, settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    org = OrganizationFactory()
    org.webhook_secret = "rotate-me"
    org.save()
    before = _raw_secret_column(org.pk)

    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    # Still readable with the old key listed second, before rotation.
    assert Organization.objects.get(pk=org.pk).webhook_secret == "rotate-me"

    call_command("rotate_encryption_keys", stdout=io.StringIO())
    after = _raw_secret_column(org.pk)
    assert after != before

    # The old key can now be dropped: the new key alone reads the value.
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert Organization.objects.get(pk=org.pk).webhook_secret == "rotate-me"
    assert Fernet(new_key.encode()).decrypt(after.encode()) == b"rotate-me"


def test_a_value_no_configured_key_can_read_names_the_setting_to_fix(db, settings):
    org = OrganizationFactory()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    try:
        Organization.objects.get(pk=org.pk)
    except Exception as exc:
        assert "FIELD_ENCRYPTION_KEYS" in str(exc)
    else:
        raise AssertionError("reading with the wrong key should fail loudly")
