"""Re-encrypt every encrypted value under the newest key in FIELD_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from portal.encryption import EncryptedTextField


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column under the first key of FIELD_ENCRYPTION_KEYS. "
        "Run it after prepending a new key; then the old key can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            names = [f.name for f in fields]
            rows = model._default_manager.count()
            done = 0
            for start in range(0, rows, 500):
                with transaction.atomic():
                    batch = model._default_manager.order_by("pk").values_list("pk", *names)[
                        start : start + 500
                    ]
                    for pk, *values in batch:
                        # Reading decrypted with any key; writing encrypts with the newest.
                        model._default_manager.filter(pk=pk).update(
                            **dict(zip(names, values, strict=True))
                        )
                        done += 1
                self.stdout.write(f"{model._meta.label} ({', '.join(names)}): {done}/{rows}")
            if rows == 0:
                self.stdout.write(f"{model._meta.label} ({', '.join(names)}): nothing to do")
            total += done
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} row(s) under the newest key."))
