"""Readiness report: grade a CRM spec against the App Connect checklist (DESIGN 4.7).

The checklist (seeds/app-connect-crm-readiness.txt) names a minimum API surface (auth
validation, lookup by phone, activity create/update/read, contact create, logout) and optional
capabilities (search by name, user list with emails, disposition, recording upload, message
logging, page links). Each capability is `present`, `partial` (there, but short of what the
checklist asks, with a note saying why) or `missing`, with the spec methods that provide it.

Score: core capabilities weigh 2, optional ones 1; partial counts half; 0-100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from integrations.engine.errors import SpecError
from integrations.engine.spec import Spec
from integrations.engine.templating import iter_template_strings, placeholder_names

__all__ = ["Capability", "ReadinessReport", "readiness_report"]

PRESENT: Final = "present"
PARTIAL: Final = "partial"
MISSING: Final = "missing"

_LOGOUT_METHODS: Final = ("Logout", "Unauthorize", "RevokeToken", "Disconnect")
_AUTH_CHECK_METHODS: Final = ("GetUserInfo", "Me", "CurrentUser", "TestConnection", "ValidateAuth")
_EVENT_METHODS: Final = ("CallRinging", "CallAnswered", "CallEnded", "CallMissed", "CallDialed")


@dataclass(frozen=True)
class Capability:
    """One checklist line: its status, the methods providing it and a note for people."""

    key: str
    title: str
    core: bool
    status: str
    methods: tuple[str, ...] = ()
    note: str = ""

    @property
    def points(self) -> float:
        weight = 2 if self.core else 1
        return {PRESENT: weight, PARTIAL: weight / 2}.get(self.status, 0)

    @property
    def weight(self) -> int:
        return 2 if self.core else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "core": self.core,
            "status": self.status,
            "methods": list(self.methods),
            "note": self.note,
        }


@dataclass
class ReadinessReport:
    """The graded checklist of one spec."""

    spec_id: str
    spec_name: str
    capabilities: list[Capability] = field(default_factory=list)

    @property
    def score(self) -> int:
        total = sum(c.weight for c in self.capabilities)
        earned = sum(c.points for c in self.capabilities)
        return round(100 * earned / total) if total else 0

    @property
    def missing(self) -> list[Capability]:
        return [c for c in self.capabilities if c.status != PRESENT]

    @property
    def core_ready(self) -> bool:
        """True when every core capability is at least partly present."""
        return all(c.status != MISSING for c in self.capabilities if c.core)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec_id": self.spec_id,
            "spec_name": self.spec_name,
            "score": self.score,
            "core_ready": self.core_ready,
            "capabilities": [c.to_dict() for c in self.capabilities],
        }

    def to_text(self) -> str:
        marks = {PRESENT: "[x]", PARTIAL: "[~]", MISSING: "[ ]"}
        lines = [f"Readiness of {self.spec_name} ({self.spec_id}): {self.score}/100"]
        for title, core in (("Core", True), ("Optional", False)):
            lines.append(f"{title}:")
            for c in (c for c in self.capabilities if c.core is core):
                via = f" via {', '.join(c.methods)}" if c.methods else ""
                note = f" — {c.note}" if c.note else ""
                lines.append(f"  {marks[c.status]} {c.title}{via}{note}")
        return "\n".join(lines)


def _strings(method: Any) -> list[str]:
    return [text for _pointer, text in iter_template_strings(method)]


def _uses(spec: Spec, method_name: str, value_name: str) -> bool:
    """True if a method (any step) mentions `value_name` in a template or a response map."""
    method = spec.methods.get(method_name)
    if method is None:
        return False
    return any(value_name in placeholder_names(s, spec.var_char) for s in _strings(method))


def _present(spec: Spec, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if spec.has_method(n))


def readiness_report(spec: Spec) -> ReadinessReport:
    """Grade a `crm` spec. Raises SpecError for other classes (the checklist is for CRMs)."""
    if spec.spec_class != "crm":
        raise SpecError("the readiness report grades crm specs")
    report = ReadinessReport(spec_id=spec.id, spec_name=spec.name)
    add = report.capabilities.append

    # Core -------------------------------------------------------------------------------
    checks = _present(spec, _AUTH_CHECK_METHODS)
    if checks:
        add(Capability("auth_validation", "Auth validation", True, PRESENT, checks))
    elif spec.has_method("Users"):
        add(
            Capability(
                "auth_validation",
                "Auth validation",
                True,
                PARTIAL,
                ("Users",),
                "credentials are only checked through the user list; a GetUserInfo method "
                "would identify the connecting user",
            )
        )
    else:
        add(Capability("auth_validation", "Auth validation", True, MISSING))

    add(
        Capability(
            "lookup_by_phone",
            "Contact lookup by phone",
            True,
            PRESENT if spec.has_method("FindContact") else MISSING,
            _present(spec, ("FindContact",)),
            ""
            if not spec.has_method("FindContact")
            or any("phone_formats" in step for step in spec.steps("FindContact"))
            else "no phone_formats: only E.164 numbers will match",
        )
    )

    creators = _present(spec, ("CreateActivity",))
    events = _present(spec, _EVENT_METHODS)
    if creators:
        add(Capability("activity_create", "Activity creation", True, PRESENT, creators))
    elif events:
        add(
            Capability(
                "activity_create",
                "Activity creation",
                True,
                PARTIAL,
                events,
                "calls are reported as events; the CRM creates the activity",
            )
        )
    else:
        add(Capability("activity_create", "Activity creation", True, MISSING))

    if spec.has_method("UpdateActivity"):
        by_id = _uses(spec, "UpdateActivity", "activity_id")
        add(
            Capability(
                "activity_update",
                "Activity update",
                True,
                PRESENT if by_id else PARTIAL,
                ("UpdateActivity",),
                "" if by_id else "UpdateActivity does not target $activity_id$",
            )
        )
    else:
        add(Capability("activity_update", "Activity update", True, MISSING))

    add(
        Capability(
            "activity_read",
            "Activity retrieval (avoid overwriting CRM-side edits)",
            True,
            PRESENT if spec.has_method("GetActivity") else MISSING,
            _present(spec, ("GetActivity",)),
        )
    )
    add(
        Capability(
            "contact_create",
            "Contact creation",
            True,
            PRESENT if spec.has_method("CreateContact") else MISSING,
            _present(spec, ("CreateContact",)),
        )
    )

    logout = _present(spec, _LOGOUT_METHODS)
    if logout:
        add(Capability("logout", "Logout or token cleanup", True, PRESENT, logout))
    elif spec.authentication.get("revoke_url"):
        add(
            Capability(
                "logout", "Logout or token cleanup", True, PRESENT, note="authentication.revoke_url"
            )
        )
    elif spec.uninstall:
        add(
            Capability(
                "logout", "Logout or token cleanup", True, PRESENT, note="Uninstall requests"
            )
        )
    elif spec.auth_type in ("basic", "bearer", "none"):
        add(
            Capability(
                "logout",
                "Logout or token cleanup",
                True,
                PARTIAL,
                note=f"{spec.auth_type} credentials are simply deleted; nothing to revoke",
            )
        )
    else:
        add(Capability("logout", "Logout or token cleanup", True, MISSING))

    # Optional ---------------------------------------------------------------------------
    add(
        Capability(
            "search_by_name",
            "Contact search by name",
            False,
            PRESENT if spec.has_method("SearchContacts") else MISSING,
            _present(spec, ("SearchContacts",)),
        )
    )
    if spec.has_method("Users"):
        with_email = _uses(spec, "Users", "user_email")
        add(
            Capability(
                "user_list",
                "User list with emails",
                False,
                PRESENT if with_email else PARTIAL,
                ("Users",),
                "" if with_email else "Users does not capture user_email (no automatic mapping)",
            )
        )
    else:
        add(Capability("user_list", "User list with emails", False, MISSING))
    add(
        Capability(
            "disposition",
            "Disposition/category update",
            False,
            PRESENT if spec.has_method("ChangeActivityStatus") else MISSING,
            _present(spec, ("ChangeActivityStatus",)),
        )
    )
    if spec.has_method("UploadRecording"):
        add(
            Capability("recording_upload", "Recording upload", False, PRESENT, ("UploadRecording",))
        )
    else:
        linking = tuple(
            name
            for name in ("CreateActivity", "UpdateActivity", "CallEnded")
            if _uses(spec, name, "recording_url")
        )
        add(
            Capability(
                "recording_upload",
                "Recording upload",
                False,
                PARTIAL if linking else MISSING,
                linking,
                "recordings are linked by URL, not uploaded" if linking else "",
            )
        )
    message_log = _present(spec, ("CreateMessageLog", "UpdateMessageLog"))
    add(
        Capability(
            "message_log",
            "Message logging",
            False,
            PRESENT if "CreateMessageLog" in message_log else MISSING,
            message_log,
        )
    )
    links = [name for name in ("contact_url", "activity_url") if getattr(spec, name)]
    add(
        Capability(
            "page_links",
            "CRM pages open from stable URL templates",
            False,
            PRESENT if len(links) == 2 else PARTIAL if links else MISSING,
            note=", ".join(links),
        )
    )
    return report
