"""`manage.py demo_integrations`: install and connect the example CRM and SMS provider for the
demo organizations against the sandbox servers (`manage.py sandbox` must be running).
Idempotent. Needs OUTBOUND_ALLOW_PRIVATE_NETWORKS=true (the sandbox is on 127.0.0.1)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.demo import demo_integrations_seed
from integrations.engine.errors import IntegrationError, SpecError
from integrations.sandbox.runner import default_ports


class Command(BaseCommand):
    help = "Install and connect the example CRM and SMS provider for the demo organizations."

    def add_arguments(self, parser: CommandParser) -> None:
        ports = default_ports()
        parser.add_argument(
            "--crm-url",
            default=f"http://127.0.0.1:{ports['crm']}",
            help="Base URL of the generic CRM sandbox (default: %(default)s).",
        )
        parser.add_argument(
            "--sms-url",
            default=f"http://127.0.0.1:{ports['sms']}",
            help="Base URL of the SMS provider sandbox (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = demo_integrations_seed(crm_url=options["crm_url"], sms_url=options["sms_url"])
        except (ImproperlyConfigured, ValueError, SpecError) as exc:
            raise CommandError(str(exc)) from exc
        except IntegrationError as exc:
            raise CommandError(f"{exc} — is the sandbox running (`manage.py sandbox`)?") from exc
        self.stdout.write(
            f"Demo integrations ready: {len(result.installations)} installations "
            f"({result.created} new, {result.connected} connected now), "
            f"{result.mapped} users mapped, {result.numbers_bound} numbers bound."
        )
