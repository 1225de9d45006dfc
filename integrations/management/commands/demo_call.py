"""`manage.py demo_call --org <slug>`: post a realistic call — ringing, answered, hangup, then
its recording — through the real PBX webhook endpoint of a running portal, printing each step,
then show what the CRM integrations logged.

The events go over HTTP (as a PBX would send them) to
``<portal>/api/v1/hooks/pbx/<org webhook key>/call``, authenticated with the organization's
webhook secret (HTTP Basic, any username). With `make run` the portal logs the call in-process
to the sandbox CRM; with a broker, a worker does it and this command waits for the result.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from integrations.models import Call, CallActivity
from tenants.models import Organization

# Jane Doe: a contact of the generic CRM sandbox and of the Zoho sandbox.
DEFAULT_CALLER = "+14155550100"
DEFAULT_CALLER_NAME = "Jane Doe"


class Command(BaseCommand):
    help = "Post a demo call (ringing, answered, hangup, recording) to a running portal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="The organization's slug.")
        parser.add_argument(
            "--portal",
            default="http://127.0.0.1:8000",
            help="Base URL of the running portal (default: %(default)s).",
        )
        parser.add_argument("--caller", default=DEFAULT_CALLER, help="The caller's number.")
        parser.add_argument("--caller-name", default=DEFAULT_CALLER_NAME)
        parser.add_argument(
            "--extension",
            default="",
            help="The PBX user's extension (default: the organization's first PBX user).",
        )
        parser.add_argument(
            "--recording-url",
            default="",
            help="URL of the call's recording (default: a sample file served by the portal).",
        )
        parser.add_argument("--call-id", default="", help="Default: demo-<random>.")
        parser.add_argument(
            "--wait",
            type=float,
            default=20.0,
            help="Seconds to wait for the activities to be logged (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = list(Organization.objects.filter(slug=options["org"]).order_by("pk"))
        if not organizations:
            raise CommandError(f"No organization with slug {options['org']!r}.")
        if len(organizations) > 1:
            self.stderr.write(
                f"{len(organizations)} organizations have the slug {options['org']!r}; "
                f"using the first (id {organizations[0].pk})."
            )
        org = organizations[0]
        portal = options["portal"].rstrip("/")
        extension = options["extension"] or (
            org.pbx_users.order_by("extension").values_list("extension", flat=True).first() or ""
        )
        call_id = options["call_id"] or f"demo-{uuid.uuid4().hex[:10]}"
        recording_url = options["recording_url"] or f"{portal}/static/demo/call-recording.wav"
        url = f"{portal}/api/v1/hooks/pbx/{org.webhook_key}/call"
        start = datetime.now(UTC).replace(microsecond=0)
        answer, end = start + timedelta(seconds=6), start + timedelta(seconds=101)
        base = {
            "call_id": call_id,
            "direction": "inbound",
            "caller_number": options["caller"],
            "caller_name": options["caller_name"],
            "called_number": org.sms_numbers.values_list("number", flat=True).first()
            or "+18185559876",
            "extension": extension or None,
            "start": _iso(start),
        }
        steps = [
            ("ringing", {}),
            ("answered", {"answer": _iso(answer)}),
            ("completed", {"answer": _iso(answer), "end": _iso(end), "duration": 95}),
            (
                "completed",
                {
                    "answer": _iso(answer),
                    "end": _iso(end),
                    "duration": 95,
                    "recording_url": recording_url,
                },
            ),
        ]
        self.stdout.write(f"Posting call {call_id} for {org.name} to {url}")
        session = requests.Session()
        session.auth = ("pbx", org.webhook_secret)
        for number, (status, extra) in enumerate(steps, start=1):
            body = {**base, **extra, "status": status, "event_id": f"{call_id}-{number}"}
            label = "recording" if "recording_url" in extra else status
            try:
                response = session.post(url, json=body, timeout=60)
            except requests.RequestException as exc:
                raise CommandError(
                    f"Could not reach the portal at {portal} ({exc}); is it running (`make run`)?"
                ) from exc
            self.stdout.write(f"  {number}. {label:<10} → {response.status_code} {response.text}")
            if response.status_code >= 300:
                raise CommandError(f"The portal refused the {label} event.")
            time.sleep(0.3)
        self._report(org, call_id, portal, options["wait"])

    def _report(self, org: Organization, call_id: str, portal: str, wait: float) -> None:
        deadline = time.monotonic() + wait
        activities: list[CallActivity] = []
        while True:
            call = Call.objects.filter(organization=org, call_id=call_id).first()
            activities = list(call.activities.select_related("installation")) if call else []
            settled = activities and all(
                a.state != CallActivity.State.PENDING
                and (a.recording_uploaded or a.state != CallActivity.State.CREATED)
                for a in activities
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if call is None:
            self.stdout.write("The events are stored; no worker has processed them yet.")
            return
        self.stdout.write(f"Call {call_id}: {call.status}")
        if not activities:
            self.stdout.write(
                "  No CRM integration logged it: enable and connect one on the organization's "
                "Integrations tab (make run does it for the demo organizations)."
            )
        for activity in activities:
            installation = activity.installation
            log = portal + reverse("integrations:delivery_log", args=[installation.pk])
            detail = activity.activity_id or activity.last_error or ""
            self.stdout.write(
                f"  {installation.label or installation.spec_version.spec.name}: "
                f"{activity.state} {detail}"
                + (" (recording uploaded)" if activity.recording_uploaded else "")
            )
            self.stdout.write(f"    delivery log: {log}")
        self.stdout.write(f"Calls page: {portal}{reverse('integrations:calls', args=[org.pk])}")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
