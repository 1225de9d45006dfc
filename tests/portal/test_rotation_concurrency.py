"""`rotate_encryption_keys` while the portal writes: a value changed during the rotation is
never overwritten with the older one (real transactions, two database connections)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection, transaction

from tenants.models import Organization
from tests.factories import OrganizationFactory


@pytest.mark.django_db(transaction=True)
def test_a_secret_rotated_during_key_rotation_keeps_its_new_value(settings) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite locks the whole database)")
    org = OrganizationFactory(webhook_secret="old-secret")
    settings.FIELD_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def portal_rotates_the_webhook_secret() -> None:
        """The portal's write: holds the row from before the key rotation reads it until
        after, then commits the new secret."""
        try:
            with transaction.atomic():
                row = Organization.objects.select_for_update().get(pk=org.pk)
                row.webhook_secret = "new-secret"
                row.save(update_fields=["webhook_secret"])
                locked.set()
                release.wait(10)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            locked.set()
        finally:
            connection.close()

    def key_rotation() -> None:
        try:
            call_command("rotate_encryption_keys", stdout=io.StringIO())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    writer = threading.Thread(target=portal_rotates_the_webhook_secret)
    writer.start()
    assert locked.wait(10)
    rotation = threading.Thread(target=key_rotation)
    rotation.start()
    # Give the rotation time to reach the locked row (and, without a lock of its own, to
    # read the old value and queue its write behind the portal's).
    time.sleep(1.5)
    release.set()
    writer.join(20)
    rotation.join(60)

    assert not errors, errors
    assert not rotation.is_alive()
    assert Organization.objects.get(pk=org.pk).webhook_secret == "new-secret"
    # And it is stored under the newest key, so the old one can be dropped.
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    assert Organization.objects.get(pk=org.pk).webhook_secret == "new-secret"
