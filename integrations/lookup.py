"""Synchronous caller lookup (DESIGN 6): who is calling, according to every CRM of the org.

`caller_lookup(organization=…, phone=…)` asks every *active* CRM installation of the
organization whose spec has `FindContact`, concurrently, each in its own thread with a strict
time budget (LOOKUP_TIMEOUT_SECONDS, default 2 s): the HTTP door makes a single attempt,
and the answer is assembled when every CRM has answered or the budget is
spent, whichever comes first. A CRM that is slow, failing or misconfigured contributes an error
entry to `sources`, never a failure of the whole answer.

Answers are cached per (installation, E.164 number) in Django's cache (CACHE_URL: local memory
in the embedded default, Redis in production) for LOOKUP_CACHE_SECONDS (default 300), "no
match" included; errors are not cached. `lookup_cache_invalidate(installation=…, phone=…)` drops
one entry: call it after creating a contact through us (call logging does, after CreateContact).

Each contact carries `contact_url`, rendered from the spec's `contact_url` template with the
installation's values and the record (never from a template that names a secret property).

Database access stays in the calling thread: installations, specs and tokens are loaded
before the threads start, and the delivery log rows of the attempts are written afterwards.
A thread touches the database only to refresh an expired OAuth token (rare), or to log the
attempts of a CRM that answered after the budget was spent; it closes its connection.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections

from integrations.connections import (
    DeliveryLogger,
    InstallationRefreshLock,
    InstallationTokenStore,
    installation_properties,
    installation_spec,
    portal_system_values,
)
from integrations.engine.auth import TokenSet
from integrations.engine.client import SpecClient
from integrations.engine.errors import IntegrationError, SpecError
from integrations.engine.http import AttemptRecord, HttpSession
from integrations.engine.request import prepare_context
from integrations.engine.spec import Spec
from integrations.engine.templating import placeholder_names, render_text
from integrations.models import Installation, IntegrationSpec
from integrations.services import installation_needs_reconnect
from tenants.models import Organization
from tenants.phones import phone_to_e164

logger = logging.getLogger(__name__)

CACHE_PREFIX = "patchbay:lookup:v1"


def lookup_cache_key(installation: Installation, phone: str) -> str:
    """The cache key of one installation's answer for one E.164 number. The spec version is
    part of it, so upgrading an installation never serves answers mapped by the old spec."""
    return f"{CACHE_PREFIX}:{installation.pk}:{installation.spec_version_id}:{phone}"


def lookup_cache_invalidate(*, installation: Installation, phone: str) -> None:
    """Forget the cached lookup of `phone` (E.164, or national in the org's region) for
    `installation`; the next lookup asks the CRM again. Unreadable numbers are ignored."""
    try:
        number = phone_to_e164(phone, region=installation.organization.default_region)
    except Exception:
        return
    cache.delete(lookup_cache_key(installation, number))


@dataclass
class LookupSource:
    """How one CRM installation contributed to an answer."""

    installation_id: int
    name: str
    spec_id: str
    status: str  # "ok", "cached", "timeout", "error"
    count: int = 0
    duration_ms: int = 0
    error: str = ""


@dataclass
class LookupResult:
    """Contacts of every CRM (each with its installation) and how each CRM answered."""

    phone: str
    contacts: list[dict[str, Any]] = field(default_factory=list)
    sources: list[LookupSource] = field(default_factory=list)


class _PreloadedTokenStore:
    """The installation's token store, with the first load served from a snapshot taken in
    the calling thread (later loads, inside a refresh, read the database again)."""

    def __init__(self, store: InstallationTokenStore, snapshot: TokenSet | None) -> None:
        self.store = store
        self.snapshot = snapshot
        self.used = False

    def load(self) -> TokenSet | None:
        if not self.used:
            self.used = True
            return self.snapshot
        return self.store.load()

    def save(self, tokens: TokenSet) -> None:
        self.store.save(tokens)


@dataclass
class _Job:
    """One CRM's FindContact, run in a worker thread."""

    installation: Installation
    spec: Spec
    client: SpecClient
    attempts: list[AttemptRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False
    started: float = 0.0
    finished: float = 0.0

    def record(self, attempt: AttemptRecord) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def run(self, phone: str) -> list[dict[str, Any]]:
        self.started = time.monotonic()
        try:
            result = self.client.call("FindContact", {"phone": phone})
            return [self._contact(record) for record in result.records]
        finally:
            self.finished = time.monotonic()
            with self.lock:
                late = self.abandoned
            if late:
                # The answer came after the budget: nobody else will log these attempts.
                try:
                    _log_attempts(self.installation, self.attempts)
                except Exception:
                    logger.exception("lookup: could not log late attempts of %s", self.installation)
            connections.close_all()

    def _contact(self, record: dict[str, Any]) -> dict[str, Any]:
        contact = _json_safe(record)
        contact["contact_url"] = contact_url_render(self.spec, self.client, record)
        return contact


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value, default=str))


def contact_url_render(spec: Spec, client: SpecClient, record: dict[str, Any]) -> str | None:
    """The spec's `contact_url` for one record, or None (no template, a value missing, or a
    template that names a secret property, which must never end up in a link)."""
    template = spec.contact_url
    if not template:
        return None
    secret_names = {p.name for p in spec.properties if getattr(p, "type", "") == "secret"}
    if secret_names & set(placeholder_names(template, spec.var_char)):
        return None
    try:
        context = prepare_context(spec, {**client.base_values(), **record})
        url = render_text(template, context, spec.var_char)
    except SpecError:
        return None
    return url if url.startswith(("https://", "http://")) else None


def _log_attempts(installation: Installation, attempts: list[AttemptRecord]) -> None:
    logger_ = DeliveryLogger(installation)
    for attempt in attempts:
        logger_(attempt)


def lookup_installations(organization: Organization) -> list[Installation]:
    """The organization's active CRM installations (any spec; those without FindContact are
    skipped by the lookup)."""
    return list(
        Installation.objects.filter(
            organization=organization,
            status=Installation.Status.ACTIVE,
            spec_version__spec__spec_class=IntegrationSpec.SpecClass.CRM,
        )
        .select_related("spec_version__spec", "organization")
        .order_by("created_at", "pk")
    )


def _client_for(
    installation: Installation, spec: Spec, job_record: Any, budget: float
) -> SpecClient:
    session = HttpSession(
        allow_private_networks=settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS,
        # A little beyond the budget: the caller stops waiting at the budget (reporting a
        # timeout); this only bounds how long the abandoned thread lingers.
        default_timeout=budget + 1.0,
        max_attempts=1,
        on_attempt=job_record,
    )
    store = InstallationTokenStore(installation.pk)
    return SpecClient(
        spec,
        properties=installation_properties(installation),
        installation_values=installation.captured or {},
        session=session,
        token_store=_PreloadedTokenStore(store, store.load()),
        lock=InstallationRefreshLock(installation.pk),
        region=installation.organization.default_region,
        system_values=portal_system_values(installation),
    )


def caller_lookup(
    *, organization: Organization, phone: str, use_cache: bool = True
) -> LookupResult:
    """Contacts matching `phone` in every active CRM installation of `organization`.

    `phone` is normalized to E.164 in the organization's region. Raises ValidationError
    (field `phone`) when it cannot be read; never raises for a CRM's failure.
    """
    number = phone_to_e164(phone, region=organization.default_region, field="phone")
    budget = float(settings.LOOKUP_TIMEOUT_SECONDS)
    result = LookupResult(phone=number)
    jobs: list[tuple[_Job, LookupSource]] = []
    ordered: list[tuple[LookupSource, list[dict[str, Any]]]] = []
    for installation in lookup_installations(organization):
        spec_row = installation.spec_version.spec
        source = LookupSource(
            installation_id=installation.pk,
            name=installation.label or spec_row.name,
            spec_id=spec_row.spec_id,
            status="ok",
        )
        try:
            spec = installation_spec(installation)
        except SpecError as exc:
            source.status, source.error = "error", f"The integration's spec is invalid: {exc}"
            ordered.append((source, []))
            continue
        if not spec.has_method("FindContact"):
            continue
        key = lookup_cache_key(installation, number)
        cached = cache.get(key) if use_cache else None
        if cached is not None:
            source.status, source.count = "cached", len(cached)
            ordered.append((source, cached))
            continue
        job = _Job(installation=installation, spec=spec, client=None)  # type: ignore[arg-type]
        job.client = _client_for(installation, spec, job.record, budget)
        jobs.append((job, source))
        ordered.append((source, []))

    if jobs:
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(jobs), thread_name_prefix="lookup"
        )
        started = time.monotonic()
        futures = {executor.submit(job.run, number): (job, source) for job, source in jobs}
        done, _pending = concurrent.futures.wait(futures, timeout=budget)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        executor.shutdown(wait=False)
        by_source = {id(source): index for index, (source, _c) in enumerate(ordered)}
        for future, (job, source) in futures.items():
            if future not in done:
                with job.lock:
                    job.abandoned = True
                    attempts = list(job.attempts)
                    job.attempts.clear()
                _log_attempts(job.installation, attempts)
                source.status = "timeout"
                source.duration_ms = elapsed_ms
                source.error = (
                    f"{source.name} did not answer within {budget:g} s; "
                    "its contacts are missing from this answer."
                )
                continue
            _log_attempts(job.installation, job.attempts)
            source.duration_ms = int(max(0.0, job.finished - job.started) * 1000)
            try:
                contacts = future.result()
            except IntegrationError as exc:
                source.status, source.error = "error", exc.message
                if exc.auth_failed:
                    # Refused even after a refresh: same as for calls and messages.
                    installation_needs_reconnect(installation=job.installation, message=exc.message)
                continue
            except SpecError as exc:
                source.status, source.error = "error", f"The integration's spec is wrong: {exc}"
                continue
            except Exception as exc:  # one CRM's surprise must not break the answer
                logger.exception("lookup in %s failed", job.installation)
                source.status, source.error = "error", f"{type(exc).__name__}: {exc}"
                continue
            source.count = len(contacts)
            ordered[by_source[id(source)]] = (source, contacts)
            if use_cache:
                cache.set(
                    lookup_cache_key(job.installation, number),
                    contacts,
                    int(settings.LOOKUP_CACHE_SECONDS),
                )

    for source, contacts in ordered:
        result.sources.append(source)
        for contact in contacts:
            result.contacts.append(
                {
                    "installation_id": source.installation_id,
                    "integration": source.name,
                    **contact,
                }
            )
    return result
