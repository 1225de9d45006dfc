"""`manage.py load_builtin_specs`: store the built-in specs (integrations/specs/*.json) in the
catalog, approved. A changed file becomes a new version; unchanged files change nothing.
(`migrate` runs this too.)"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integrations.engine.errors import SpecError
from integrations.services import builtin_specs_sync


class Command(BaseCommand):
    help = "Store the built-in specs in the catalog (approved); changed files become new versions."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = builtin_specs_sync()
        except SpecError as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems)
            raise CommandError(
                f"Some built-in specs are invalid (the others were stored):\n{problems}"
            ) from exc
        if not created:
            self.stdout.write("Built-in specs are up to date.")
        for version in created:
            self.stdout.write(f"Stored {version.spec.spec_id} v{version.number}.")
