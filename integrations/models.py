"""Integrations in the portal: the spec catalog, installations of a spec for an
organization, OAuth connect state, CRM user mapping and the delivery log.

Tenant scoping: every queryset has `for_user(user)`, built on
`Organization.objects.for_user`, and reads go through `integrations.selectors`.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from portal.encryption import EncryptedJSONField, EncryptedTextField
from tenants.models import Account, Organization, OrganizationScopedQuerySet, PbxUser


def _new_installation_key() -> str:
    return secrets.token_urlsafe(18)


class SpecQuerySet(models.QuerySet["IntegrationSpec"]):
    def for_user(self, user: object) -> SpecQuerySet:
        """Built-in specs and the custom specs of accounts `user` belongs to."""
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return self.filter(account__isnull=True)
        accounts = Account.objects.filter(memberships__user=user)
        return self.filter(Q(account__isnull=True) | Q(account__in=accounts)).distinct()


class IntegrationSpec(models.Model):
    """One integration in the catalog: a built-in spec (no account) or an account's custom
    spec. Its documents are versioned in `SpecVersion`."""

    class SpecClass(models.TextChoices):
        CRM = "crm", "CRM"
        SMS = "sms", "SMS/MMS"

    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="specs"
    )
    spec_id = models.CharField(max_length=100, help_text="The spec's `id`.")
    name = models.CharField(max_length=200)
    spec_class = models.CharField(max_length=3, choices=SpecClass.choices)
    logo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SpecQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "integration spec"
        constraints = [
            models.UniqueConstraint(
                fields=["spec_id"], condition=Q(account__isnull=True), name="builtin_spec_id_unique"
            ),
            models.UniqueConstraint(
                fields=["account", "spec_id"],
                condition=Q(account__isnull=False),
                name="custom_spec_id_unique_per_account",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.account_id is None

    def latest_approved(self) -> SpecVersion | None:
        return self.versions.filter(status=SpecVersion.Status.APPROVED).order_by("-number").first()


class SpecVersion(models.Model):
    """One uploaded document of a spec. Installations are pinned to a version."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted (waiting for review)"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    spec = models.ForeignKey(IntegrationSpec, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    document = models.JSONField()
    sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SUBMITTED)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["spec", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["spec", "number"], name="spec_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.spec.name} v{self.number}"

    @staticmethod
    def digest(document: dict) -> str:
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class Installation(models.Model):
    """A spec enabled for an organization, with its property values and credentials."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        NOT_CONNECTED = "not_connected", "Not connected"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
        DISABLED = "disabled", "Disabled"

    class MatchPolicy(models.TextChoices):
        OWNER = "owner", "The contact owned by the mapped user"
        RECENT = "recent", "The most recently updated contact"
        EARLIEST = "earliest", "The earliest created contact"
        ALL = "all", "Log to every matching contact"
        REVIEW = "review", "Hold the activity for an admin to pick"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="installations"
    )
    spec_version = models.ForeignKey(
        SpecVersion, on_delete=models.PROTECT, related_name="installations"
    )
    # Public identifier used in callback URLs (`/api/v1/hooks/crm/<key>/…`); not a secret.
    key = models.CharField(max_length=40, unique=True, default=_new_installation_key)
    label = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    status_detail = models.TextField(blank=True)
    # Non-secret property values by property name.
    properties = models.JSONField(default=dict, blank=True)
    # Secret property values by name: encrypted, never rendered back.
    secret_properties = EncryptedJSONField(null=True, blank=True)
    # Values captured by Install methods or the OAuth token response (4.9): encrypted.
    captured = EncryptedJSONField(null=True, blank=True)
    # OAuth2 / token-exchange credentials: {"access_token", "refresh_token", "expires_at", ...}.
    tokens = EncryptedJSONField(null=True, blank=True)
    connected_as = models.CharField(max_length=300, blank=True)
    create_contacts = models.BooleanField(
        default=False, help_text="Create a CRM contact when a caller is unknown."
    )
    match_policy = models.CharField(
        max_length=10, choices=MatchPolicy.choices, default=MatchPolicy.RECENT
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "created_at"]

    def __str__(self) -> str:
        return f"{self.label or self.spec_version.spec.name} for {self.organization}"

    @property
    def spec(self) -> IntegrationSpec:
        return self.spec_version.spec


class OAuthState(models.Model):
    """A pending OAuth authorization: single use, bound to an installation and a user."""

    state = models.CharField(max_length=64, unique=True)
    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="oauth_states"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    redirect_uri = models.URLField(max_length=500)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"OAuth state for {self.installation_id} (expires {self.expires_at:%Y-%m-%d %H:%M})"


class CrmUser(models.Model):
    """A user of the CRM, as last fetched through the spec's `Users` method."""

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="crm_users"
    )
    external_id = models.CharField(max_length=200)
    name = models.CharField(max_length=300, blank=True)
    email = models.CharField(max_length=300, blank=True)
    # False when the last fetch no longer returned this user.
    present = models.BooleanField(default=True)
    fetched_at = models.DateTimeField()

    class Meta:
        ordering = ["name", "email"]
        constraints = [
            models.UniqueConstraint(
                fields=["installation", "external_id"], name="crm_user_unique_per_installation"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name or self.external_id


class UserMapping(models.Model):
    """Which CRM user a PBX user is, for one installation."""

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="user_mappings"
    )
    pbx_user = models.ForeignKey(PbxUser, on_delete=models.CASCADE, related_name="crm_mappings")
    crm_user = models.ForeignKey(
        CrmUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="mappings"
    )
    # True when an admin chose it; re-fetching never overrides a manual choice.
    manual = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["installation", "pbx_user"], name="one_mapping_per_pbx_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pbx_user} → {self.crm_user or 'unmatched'}"


class UserFetch(models.Model):
    """Progress of a `Users` fetch task, shown on the mapping page."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Fetching"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="user_fetches"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    fetched = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Users fetch {self.pk} ({self.state})"


class DeliveryLogEntry(models.Model):
    """One attempt of one outbound request (CRM, SMS provider or callback)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="delivery_log"
    )
    installation = models.ForeignKey(
        Installation, null=True, blank=True, on_delete=models.CASCADE, related_name="delivery_log"
    )
    method_name = models.CharField(max_length=100)
    http_method = models.CharField(max_length=10, blank=True)
    url = models.TextField(help_text="Secrets redacted.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True)
    request_body = models.TextField(blank=True, help_text="Secrets redacted.")
    response_body = models.TextField(blank=True)
    produced_ids = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "delivery log entry"
        verbose_name_plural = "delivery log"
        indexes = [models.Index(fields=["installation", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.method_name} {self.status_code or self.error[:40]}"


class Notice(models.Model):
    """Something an organization's admins must act on, shown in the portal (an installation
    that needs reconnecting, a callback disabled after repeated failures)."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="notices")
    installation = models.ForeignKey(
        Installation, null=True, blank=True, on_delete=models.CASCADE, related_name="notices"
    )
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.WARNING)
    message = models.TextField()
    # What to do next, as a portal path ("/integrations/installations/4/").
    action_url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.message[:80]


class Call(models.Model):
    """What we know of one PBX call, merged from its events in any order.

    `data` holds the normalized call (direction, numbers, times, extension, recording); the
    status only moves forward (ringing → answered → completed/missed/...), so an event that
    arrives late or twice never rolls it back.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="calls")
    call_id = models.CharField(max_length=200)
    status = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "call_id"], name="call_id_per_org"),
        ]

    def __str__(self) -> str:
        return self.call_id


class CallActivity(models.Model):
    """The CRM activity of one call in one installation: created once, then updated by id."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be written"
        CREATED = "created", "Created in the CRM"
        HELD = "held", "Held for an admin to pick the contact"
        FAILED = "failed", "Failed"

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="call_activities"
    )
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="activities")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    activity_id = models.CharField(max_length=200, blank=True)
    # Extra activity ids when the match policy logs to every matching contact.
    other_activity_ids = models.JSONField(default=list, blank=True)
    contact_id = models.CharField(max_length=200, blank=True)
    # Contacts found for the caller (records of FindContact), for the review page.
    candidates = models.JSONField(default=list, blank=True)
    # The values we last wrote, to detect fields edited in the CRM since (GetActivity).
    written = models.JSONField(default=dict, blank=True)
    recording_uploaded = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    # Set while the CRM is not yet up to date with the latest call data: when the work is due
    # (now for new data, later for a retry). The sweeper re-enqueues an activity still due
    # INBOX_STUCK_AFTER_SECONDS after that (its task was lost or its worker died); a run that
    # brought the CRM up to date (or failed for good, or is held) clears it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every request to sync (new call data, a retry, a resolved review), so a run
    # only clears `next_attempt_at` when no request arrived while it was running.
    sync_requests = models.PositiveIntegerField(default=0)
    # Failed because the integration needs reconnecting: run again once it is active.
    waiting_for_reconnect = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "call activities"
        indexes = [models.Index(fields=["next_attempt_at"], name="call_activity_due")]
        constraints = [
            models.UniqueConstraint(
                fields=["installation", "call"], name="one_activity_per_call_per_installation"
            ),
        ]

    def __str__(self) -> str:
        return f"call {self.call_id} → {self.activity_id or self.state}"


def _new_message_ref() -> str:
    return secrets.token_urlsafe(12)


class Message(models.Model):
    """One SMS/MMS, inbound or outbound, through an SMS installation."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        UNDELIVERED = "undelivered", "Undelivered"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="messages"
    )
    installation = models.ForeignKey(
        Installation, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    sms_number = models.ForeignKey(
        "tenants.SmsNumber",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    sender = models.ForeignKey(
        PbxUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="sent_messages"
    )
    direction = models.CharField(max_length=10, choices=Direction.choices)
    from_number = models.CharField(max_length=32)
    to_number = models.CharField(max_length=32)
    content = models.TextField(blank=True)
    media_urls = models.JSONField(default=list, blank=True)
    # The provider's id, and ours (unique; a spec may send it for delivery reports).
    messageid = models.CharField(max_length=200, blank=True, db_index=True)
    message_ref = models.CharField(max_length=40, unique=True, default=_new_message_ref)
    status = models.CharField(max_length=12, choices=Status.choices)
    error = models.TextField(blank=True)
    # The CRM activity created for this message per CRM installation ({"<installation id>":
    # "<activity id>"}): a retried log skips the CRMs already done, and UpdateMessageLog
    # knows which activity to update.
    crm_logs = models.JSONField(default=dict, blank=True)
    # Outbound sending: attempts made so far and when the next one is due while `queued`
    # (a retry honours the provider's Retry-After; the sweeper only re-enqueues due messages).
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # CRM message logs still to write (set when the message is sent or received, cleared once
    # every CRM has it or failed for good); the sweeper re-enqueues them when overdue.
    crm_log_due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.direction} {self.from_number} → {self.to_number}"


# --- Event pipeline: the inbox of inbound events and outbound callbacks ------------------------


def _inbox_file_path(instance: InboxEvent, filename: str) -> str:
    """Where a voicemail/fax body is kept under MEDIA_ROOT: a random prefix per file, so two
    events with the same file name never collide and names are not guessable."""
    from django.utils import timezone
    from django.utils.text import get_valid_filename

    name = get_valid_filename(filename or "body") or "body"
    return f"inbox/{timezone.now():%Y/%m/%d}/{secrets.token_hex(8)}-{name[-100:]}"


class InboxEvent(models.Model):
    """One accepted inbound event (a PBX webhook, an inbound SMS, a CRM callback), stored
    before the sender is answered and processed afterwards by `integrations.inbox`.

    The row is the source of truth: the processing task only carries its id, and the sweeper
    re-enqueues rows left behind by a lost broker message or a killed worker. The raw body is
    kept with secrets redacted (the Basic password / secret header are never stored).
    """

    class Source(models.TextChoices):
        PBX = "pbx", "PBX"
        SMS = "sms", "SMS provider"
        CRM = "crm", "CRM"

    class State(models.TextChoices):
        RECEIVED = "received", "Received (waiting for a worker)"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored"

    source = models.CharField(max_length=10, choices=Source.choices)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="inbox_events"
    )
    installation = models.ForeignKey(
        Installation, null=True, blank=True, on_delete=models.CASCADE, related_name="inbox_events"
    )
    event_type = models.CharField(max_length=50)
    dedup_key = models.CharField(max_length=255)
    # The call (or other conversation) the event belongs to, e.g. the call_id; lets handlers
    # order or group the events of one call.
    correlation_key = models.CharField(max_length=255, blank=True, db_index=True)
    body = models.TextField(blank=True, help_text="Raw body as text, secrets redacted.")
    file = models.FileField(upload_to=_inbox_file_path, blank=True, max_length=300)
    content_type = models.CharField(max_length=200, blank=True)
    query = models.JSONField(default=dict, blank=True)
    headers = models.JSONField(default=dict, blank=True, help_text="Secrets redacted.")
    payload = models.JSONField(
        default=dict, blank=True, help_text="The body parsed as received (or the query metadata)."
    )
    normalized = models.JSONField(
        default=dict, blank=True, help_text="Validated fields, phone numbers in E.164."
    )
    received_at = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name = "inbox event"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "organization", "dedup_key"], name="inbox_event_dedup"
            ),
            # NULLs are distinct in a unique index: events not (yet) tied to an organization
            # need their own constraint.
            models.UniqueConstraint(
                fields=["source", "dedup_key"],
                condition=Q(organization__isnull=True),
                name="inbox_event_dedup_without_org",
            ),
        ]
        indexes = [models.Index(fields=["state", "received_at"], name="inbox_event_state_idx")]

    def __str__(self) -> str:
        return f"{self.source}/{self.event_type} #{self.pk} ({self.state})"


class CallbackSubscription(models.Model):
    """An organization's outbound callback (DESIGN 7, modelled on RingRx callbacks): events of
    `callback_type` are POSTed to `url` after `{token}` replacement."""

    class CallbackType(models.TextChoices):
        SMS = "sms", "Inbound SMS"
        VOICEMAIL = "voicemail", "Voicemail"
        FAX = "fax", "Fax"
        CDR = "cdr", "Call detail record (every call)"
        RECORDING = "recording", "Recording (every recorded call)"
        CALL_ALERT = "call_alert", "Call alert (group offers a call)"
        OUTREACH = "outreach", "Outreach event"
        MESSAGE_STATUS = "message_status", "SMS delivery status"
        CLICKTOCALL = "clicktocall", "Click-to-call / call control"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="callback_subscriptions"
    )
    name = models.CharField(max_length=200, help_text="Shown in the delivery log.")
    callback_type = models.CharField(max_length=20, choices=CallbackType.choices)
    url = models.CharField(
        "URL", max_length=2000, help_text="May contain {tokens}; values are URL-encoded."
    )
    auth_username = models.CharField(max_length=200, blank=True)
    auth_password = EncryptedTextField(blank=True, default="")
    headers = models.TextField(
        blank=True, help_text="One Name:value per line; values may contain {tokens}."
    )
    signing_secret = EncryptedTextField(blank=True, default="")
    bindings = models.JSONField(
        default=list,
        blank=True,
        help_text="Numbers, mailboxes or groups this callback is bound to; empty = all.",
    )
    active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name", "pk"]
        verbose_name = "callback subscription"

    def __str__(self) -> str:
        return f"{self.name} ({self.callback_type})"


class CallbackDeliveryQuerySet(OrganizationScopedQuerySet):
    organization_path = "subscription__organization"


class CallbackDelivery(models.Model):
    """One event to deliver to one subscription, with its retry state. `webhook_id` is the
    Standard Webhooks message id: the same on every attempt, so receivers can deduplicate.

    An attempt holds the row lock while it sends, so a worker that dies mid-attempt leaves the
    row `pending` (its lock released with its connection) for the sweeper or a redelivery."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(
        CallbackSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    inbox_event = models.ForeignKey(
        InboxEvent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="callback_deliveries",
    )
    webhook_id = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(null=True, blank=True, help_text="JSON body; null = file body.")
    tokens = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CallbackDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "callback delivery"
        verbose_name_plural = "callback deliveries"
        constraints = [
            # Fanning an inbox event out twice (a handler re-run) creates no second delivery.
            models.UniqueConstraint(
                fields=["subscription", "inbox_event"],
                condition=Q(inbox_event__isnull=False),
                name="callback_delivery_once_per_event",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="callback_delivery_due")]

    def __str__(self) -> str:
        return f"{self.subscription} #{self.pk} ({self.state})"
