"""Re-encrypt every encrypted value under the newest key in FIELD_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Model

from portal.encryption import EncryptedTextField

BATCH_SIZE = 500


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column under the first key of FIELD_ENCRYPTION_KEYS. "
        "Run it after prepending a new key; then the old key can be removed. Safe while the "
        "portal runs: each batch of rows is locked (SELECT ... FOR UPDATE) from read to write."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            names = [f.name for f in fields]
            label = f"{model._meta.label} ({', '.join(names)})"
            rows = model._default_manager.count()
            done = self._rotate_model(model, names, label, rows)
            if done == 0:
                self.stdout.write(f"{label}: nothing to do")
            total += done
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} row(s) under the newest key."))

    def _rotate_model(self, model: type[Model], names: list[str], label: str, rows: int) -> int:
        """Re-encrypt `names` of every row of `model`, batch by batch (in primary key order).

        Each batch is one transaction that locks its rows before reading them, so a value
        written meanwhile by the portal (a rotated webhook secret, refreshed OAuth tokens) is
        either read after that write commits or waits for this batch: never overwritten with
        the older value.
        """
        done, last_pk = 0, None
        manager = model._default_manager
        while True:
            with transaction.atomic():
                batch = manager.order_by("pk").select_for_update()
                if last_pk is not None:
                    batch = batch.filter(pk__gt=last_pk)
                locked = list(batch.values_list("pk", *names)[:BATCH_SIZE])
                for pk, *values in locked:
                    # Reading decrypted with any key; writing encrypts with the newest.
                    manager.filter(pk=pk).update(**dict(zip(names, values, strict=True)))
            if not locked:
                return done
            done += len(locked)
            last_pk = locked[-1][0]
            self.stdout.write(f"{label}: {done}/{max(rows, done)}")
