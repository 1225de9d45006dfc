"""``python manage.py sweep [--every SECONDS]``: recover work a lost broker message or a killed
worker left behind — inbox events, callback deliveries, outbound messages (and their CRM
logs) and call activities whose CRM is behind the call — and prune the delivery log of entries
older than DELIVERY_LOG_RETENTION_DAYS (at once, then hourly with ``--every``).

In production `celery beat` runs the same sweeps every minute. Without a broker (the embedded
default) there is no beat: `make run` runs this command with `--every 30` beside the portal.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from integrations.call_logging import call_activity_sweep
from integrations.callbacks import callback_sweep
from integrations.delivery_log import delivery_log_prune
from integrations.inbox import inbox_sweep
from integrations.messaging import message_crm_log_sweep, message_sweep


class Command(BaseCommand):
    help = (
        "Re-enqueue stuck inbox events, callback deliveries, queued messages, message CRM "
        "logs and call activities; prune old delivery-log entries."
    )

    prune_every_seconds = 3600.0

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=float, default=0, help="repeat every SECONDS until interrupted"
        )
        parser.add_argument(
            "--stuck-after",
            type=float,
            default=None,
            help="seconds before a row counts as stuck (default: INBOX_STUCK_AFTER_SECONDS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pruned_at: float | None = None
        while True:
            if pruned_at is None or time.monotonic() - pruned_at >= self.prune_every_seconds:
                pruned = delivery_log_prune()
                pruned_at = time.monotonic()
                if pruned or not options["every"]:
                    self.stdout.write(f"Pruned {pruned} delivery-log entry(ies).")
            stuck_after = options["stuck_after"]
            events = inbox_sweep(stuck_after_seconds=stuck_after)
            deliveries = callback_sweep(stuck_after_seconds=stuck_after)
            messages = message_sweep(stuck_after_seconds=stuck_after)
            crm_logs = message_crm_log_sweep(stuck_after_seconds=stuck_after)
            activities = call_activity_sweep(stuck_after_seconds=stuck_after)
            if events or deliveries or messages or crm_logs or activities or not options["every"]:
                self.stdout.write(
                    f"Re-enqueued {len(events)} inbox event(s), {len(deliveries)} callback "
                    f"delivery(ies), {len(messages)} message(s), {len(crm_logs)} message CRM "
                    f"log(s), {len(activities)} call activity(ies)."
                )
            if not options["every"]:
                return
            time.sleep(options["every"])
