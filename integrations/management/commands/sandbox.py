"""``python manage.py sandbox``: run the local imitations of the third parties."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.sandbox.runner import DEFAULT_BASE_PORT, default_ports, run_all, serve_forever


class Command(BaseCommand):
    """Start the Zoho, RingRx, generic CRM and SMS sandboxes and run until Ctrl-C."""

    help = (
        "Start local imitations of Zoho PhoneBridge (base port), RingRx (+1), a generic CRM "
        "(+2) and an SMS provider (+3) on loopback, and run until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """--host, --base-port, --verbose."""
        parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
        parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
        parser.add_argument("--verbose", action="store_true", help="log every request")

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the servers, print their URLs, block until interrupted."""
        try:
            servers = run_all(
                default_ports(options["base_port"]),
                host=options["host"],
                verbose=options["verbose"],
            )
        except (ValueError, OSError) as error:
            raise CommandError(str(error)) from error
        serve_forever(servers, write=self.stdout.write)
