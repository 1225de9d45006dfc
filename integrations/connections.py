"""How the portal runs the engine for one installation.

The engine knows nothing about Django; this module supplies what it needs from the
database: the installation's property values (secrets decrypted), its captured values, a token
store backed by the encrypted `Installation.tokens` column, a refresh lock that is a row lock
on the installation (so concurrent refreshes in several workers collapse into one), the portal's
system values (click-to-call and webhook URLs), and a delivery logger that records every
attempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction

from integrations.engine.auth import TokenSet
from integrations.engine.client import SpecClient
from integrations.engine.http import AttemptRecord, HttpSession
from integrations.engine.spec import Spec, load_spec
from integrations.models import DeliveryLogEntry, Installation, SpecVersion

# Where CRMs send the admin back after authorizing (routed by integrations.urls).
OAUTH_CALLBACK_PATH = "/integrations/oauth/callback/"
# Fields of mapped results worth showing as "produced ids" in the delivery log.
PRODUCED_ID_KEYS = ("contact_id", "activity_id", "messageid", "user_id", "account_id")


@lru_cache(maxsize=256)
def _spec_for(version_id: int, sha256: str) -> Spec:
    version = SpecVersion.objects.get(pk=version_id)
    return load_spec(version.document)


def installation_spec(installation: Installation) -> Spec:
    """The loaded spec of the version the installation is pinned to (cached per version)."""
    version = installation.spec_version
    return _spec_for(version.pk, version.sha256)


class InstallationTokenStore:
    """Tokens in the installation's encrypted `tokens` column."""

    def __init__(self, installation_id: int) -> None:
        self.installation_id = installation_id

    def load(self) -> TokenSet | None:
        data = (
            Installation.objects.filter(pk=self.installation_id)
            .values_list("tokens", flat=True)
            .first()
        )
        if not data or not data.get("access_token"):
            return None
        return TokenSet.from_dict(data)

    def save(self, tokens: TokenSet) -> None:
        Installation.objects.filter(pk=self.installation_id).update(tokens=tokens.to_dict())


class InstallationRefreshLock:
    """A row lock on the installation, held while its tokens are refreshed.

    On PostgreSQL `SELECT … FOR UPDATE` makes other workers wait and then see the new tokens
    (the engine reloads them inside the lock). On SQLite, writes are serialized anyway.
    """

    def __init__(self, installation_id: int) -> None:
        self.installation_id = installation_id

    @contextmanager
    def __call__(self) -> Iterator[None]:
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            Installation.objects.select_for_update().filter(pk=self.installation_id).exists()
            yield
        except BaseException as exc:
            # A refused refresh raises here. Commit anyway unless the database itself failed:
            # the tokens were not changed, and the delivery log must keep the refused attempt
            # so a person can see why the integration needs reconnecting.
            if isinstance(exc, DatabaseError) or transaction.get_connection().needs_rollback:
                atomic.__exit__(type(exc), exc, exc.__traceback__)
            else:
                atomic.__exit__(None, None, None)
            raise
        else:
            atomic.__exit__(None, None, None)


class DeliveryLogger:
    """Turns the HTTP door's attempt records into delivery log rows."""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.entries: list[DeliveryLogEntry] = []

    def __call__(self, record: AttemptRecord) -> None:
        status = record.status
        entry = DeliveryLogEntry.objects.create(
            organization_id=self.installation.organization_id,
            installation=self.installation,
            method_name=record.method_name,
            http_method=record.http_method,
            url=record.url_redacted,
            status_code=status,
            ok=status is not None and 200 <= status < 300 and not record.error,
            duration_ms=max(0, round(record.duration_ms)),
            attempt=record.attempt,
            error=record.error or "",
            request_body=record.request_body_redacted or "",
            response_body=record.response_body_excerpt or "",
        )
        self.entries.append(entry)

    def record_result(self, values: dict[str, Any]) -> None:
        """Attach the ids a call produced to its last logged attempt."""
        if not self.entries:
            return
        produced = {
            key: values[key] for key in PRODUCED_ID_KEYS if values.get(key) not in (None, "")
        }
        if produced:
            last = self.entries[-1]
            last.produced_ids = json.loads(json.dumps(produced, default=str))
            last.save(update_fields=["produced_ids"])

    def record_failure(self, message: str) -> None:
        """Make sure a person sees the actionable message on the last attempt."""
        if self.entries and message and self.entries[-1].error != message:
            last = self.entries[-1]
            last.error = message
            last.save(update_fields=["error"])


def portal_system_values(installation: Installation) -> dict[str, Any]:
    """System values the portal supplies (DESIGN 4.2, "Portal")."""
    base = settings.PUBLIC_BASE_URL
    organization = installation.organization
    spec = installation.spec_version.spec
    values: dict[str, Any] = {
        "org_id": organization.pk,
        "domain": organization.pbx_domain,
        "clicktocall_url": base + f"/api/v1/hooks/crm/{installation.key}/clicktocall",
        "callcontrol_url": base + f"/api/v1/hooks/crm/{installation.key}",
    }
    if spec.spec_class == "sms":
        values["webhook_url"] = base + sms_webhook_path(installation)
    values["redirect_uri"] = oauth_redirect_uri()
    return values


def oauth_redirect_uri() -> str:
    """The absolute OAuth callback URL registered with CRMs (one for every installation;
    the `state` says which installation a callback is for)."""
    return settings.PUBLIC_BASE_URL + OAUTH_CALLBACK_PATH


def sms_webhook_path(installation: Installation) -> str:
    """`/services/<service_id>/a<account_id>`: where the provider posts inbound messages."""
    spec = installation.spec_version.spec
    return f"/services/{spec.spec_id}/a{installation.organization.account_id}"


def installation_properties(installation: Installation) -> dict[str, Any]:
    """Property values by name, secrets decrypted (never show these to a person)."""
    return {**(installation.properties or {}), **(installation.secret_properties or {})}


@dataclass
class Connection:
    """A configured engine client for one installation and the log of what it sent."""

    client: SpecClient
    log: DeliveryLogger


def installation_connection(
    installation: Installation, *, session: HttpSession | None = None
) -> Connection:
    """A `SpecClient` for `installation` whose every attempt goes to the delivery log."""
    logger = DeliveryLogger(installation)
    if session is None:
        session = HttpSession(
            allow_private_networks=settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS,
            default_timeout=settings.OUTBOUND_TIMEOUT_SECONDS,
            on_attempt=logger,
        )
    client = SpecClient(
        installation_spec(installation),
        properties=installation_properties(installation),
        installation_values=installation.captured or {},
        session=session,
        token_store=InstallationTokenStore(installation.pk),
        lock=InstallationRefreshLock(installation.pk),
        region=installation.organization.default_region,
        system_values=portal_system_values(installation),
    )
    return Connection(client=client, log=logger)
