from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def load_builtin_specs(sender: AppConfig, verbosity: int = 1, **kwargs: Any) -> None:
    """After `migrate` (and a test database flush): store the built-in specs, approved.

    An invalid built-in spec must not break `migrate`: the valid ones are stored and the
    problems logged; `manage.py load_builtin_specs` reports them as an error.
    """
    from django.db import connections

    from integrations.engine.errors import SpecError
    from integrations.services import builtin_specs_sync

    using = kwargs.get("using", "default")
    tables = connections[using].introspection.table_names()
    if "integrations_specversion" not in tables:  # migrated backwards: nothing to fill
        return
    try:
        created = builtin_specs_sync()
    except SpecError as exc:
        logger.warning("Some built-in specs are invalid and were not loaded: %s", exc)
        return
    if created and verbosity >= 2:
        logger.info("Loaded %d built-in spec version(s).", len(created))


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(
            load_builtin_specs, sender=self, dispatch_uid="integrations.load_builtin_specs"
        )
        # Registers the SMS / click-to-call inbox handlers and the message send task, and the
        # call-logging inbox handlers (pbx/call, cdr, recording) and its task.
        from integrations import (  # noqa: F401
            call_logging,
            call_logging_tasks,
            messaging_tasks,
        )
