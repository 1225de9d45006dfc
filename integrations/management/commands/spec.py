"""``python manage.py spec``: the spec author's command line (DESIGN 4.7, 4.8).

* ``spec validate PATH...`` — every problem of every file, one ``PATH: /pointer: message`` line
  each; exit 1 if any file has a problem.
* ``spec readiness PATH [--json]`` — the App Connect checklist of a CRM spec.
* ``spec call PATH METHOD --prop "NAME=VALUE" --param NAME=VALUE ...`` — run one method against
  the live API as the portal would (phone formats, token, region) and print the mapped result;
  ``--dry-run`` prints the requests instead, secrets redacted.
* ``spec webhook PATH --content-type TYPE --body-file FILE`` — feed one inbound provider request
  through the spec's Webhook models as the portal's endpoint would and print the event.

Exit codes: 0 success; 1 a spec or configuration mistake, a rejected or unmatched webhook;
2 the third party failed (``IntegrationError``: its status and message go to stderr).

The command only uses the pure engine (``integrations.engine``): it needs no database.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlencode

from django.core.management.base import BaseCommand, CommandParser

from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import CallResult, SpecClient, request_summary
from integrations.engine.errors import IntegrationError, Problem, SpecError
from integrations.engine.http import HttpSession, redact
from integrations.engine.mapping import coerce_value
from integrations.engine.readiness import MISSING, PARTIAL, PRESENT, readiness_report
from integrations.engine.spec import Spec, load_spec
from integrations.engine.webhooks import (
    WebhookMatch,
    WebhookRejected,
    match_webhook,
)

EXIT_SPEC_ERROR: Final = 1
EXIT_INTEGRATION_ERROR: Final = 2

_MARKS: Final = {PRESENT: "✓", PARTIAL: "~", MISSING: "✗"}

# What to add for each missing readiness capability (the report's own note wins for partial ones).
_READINESS_HINTS: Final[Mapping[str, str]] = {
    "auth_validation": "add a GetUserInfo method (the connecting user) so bad credentials "
    "are caught at setup",
    "lookup_by_phone": "add FindContact with phone_formats",
    "activity_create": "add CreateActivity capturing $activity_id$",
    "activity_update": "add UpdateActivity addressed by $activity_id$",
    "activity_read": "add GetActivity so updates do not overwrite edits made in the CRM",
    "contact_create": "add CreateContact capturing $contact_id$",
    "logout": "add a Logout method, authentication.revoke_url or Uninstall requests",
    "search_by_name": "add SearchContacts using $query$",
    "user_list": "add Users capturing user_id, user_name and user_email",
    "disposition": "add ChangeActivityStatus",
    "recording_upload": "add UploadRecording (multipart with $recording_file$)",
    "message_log": "add CreateMessageLog",
    "page_links": "add contact_url and activity_url",
}

# The values of an inbound event shown by `spec webhook`, in this order.
_EVENT_FIELDS: Final = (
    "from",
    "to",
    "content",
    "text",
    "url",
    "messageid",
    "message_ref",
    "status",
    "provider_status",
)


class CommandExit(Exception):
    """Stop the command with `code` after printing `lines` to stderr."""

    def __init__(self, code: int, lines: Iterable[str]) -> None:
        self.code = code
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def _json_text(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _pairs(items: list[str] | None, option: str) -> list[tuple[str, str]]:
    """`NAME=VALUE` arguments as pairs (split at the first `=`; names may contain spaces)."""
    pairs = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandExit(EXIT_SPEC_ERROR, [f"{option} {item!r}: expected NAME=VALUE"])
        pairs.append((name.strip(), value))
    return pairs


def _spec_files(paths: list[str]) -> list[pathlib.Path]:
    """The files named, a directory standing for every spec file under it (not its schema)."""
    files: list[pathlib.Path] = []
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            files.extend(
                p for p in sorted(path.rglob("*.json")) if "schema" not in p.relative_to(path).parts
            )
        else:
            files.append(path)
    return files


def read_spec(path: pathlib.Path) -> tuple[Spec | None, list[Problem]]:
    """The spec file at `path`, or None and every problem it has.

    An unreadable file or one that is not JSON is one problem (naming the line and column).
    """
    try:
        return load_spec(path), []
    except SpecError as error:
        return None, error.problems
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return None, [Problem("", f"cannot read the file: {reason}")]


def _load(path: str) -> Spec:
    """Load a spec file; raises CommandExit(1) with one `PATH: /pointer: message` per problem."""
    spec, problems = read_spec(pathlib.Path(path))
    if spec is None:
        raise CommandExit(EXIT_SPEC_ERROR, [f"{path}: {p}" for p in problems])
    return spec


# -------------------------------------------------------------------------------- readiness


def readiness_text(spec: Spec) -> str:
    """The readiness checklist of a CRM spec for people: ✓/~/✗, methods, score, what to add."""
    report = readiness_report(spec)
    ready = "core ready" if report.core_ready else "core capabilities missing"
    lines = [f"Readiness of {report.spec_name} ({report.spec_id}): {report.score}/100, {ready}"]
    for title, core in (("Core", True), ("Optional", False)):
        lines.append(f"{title}:")
        for capability in report.capabilities:
            if capability.core is not core:
                continue
            via = f" — {', '.join(capability.methods)}" if capability.methods else ""
            note = f" ({capability.note})" if capability.note else ""
            lines.append(f"  {_MARKS[capability.status]} {capability.title}{via}{note}")
    # Core before optional, missing before partial: the order in which adding them pays most.
    todo = sorted(report.missing, key=lambda c: (not c.core, c.status != MISSING))
    if todo:
        lines.append("Add next:")
        for capability in todo:
            hint = _READINESS_HINTS.get(capability.key, "")
            if capability.status == PARTIAL and capability.note:
                hint = capability.note
            kind = "core" if capability.core else "optional"
            lines.append(f"  - [{kind}] {capability.title}: {hint}".rstrip(": "))
    else:
        lines.append("Nothing to add: every capability is present.")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- call


def call_properties(spec: Spec, given: list[tuple[str, str]]) -> tuple[dict[str, Any], list[str]]:
    """Property values as the portal's form would give them: defaults filled in.

    Returns (values, warnings). Raises CommandExit naming an undeclared property.
    """
    declared = spec.property_names
    values: dict[str, Any] = {}
    for name, value in given:
        if name not in declared:
            known = ", ".join(repr(n) for n in declared) or "none"
            raise CommandExit(
                EXIT_SPEC_ERROR,
                [f"--prop {name!r}: the spec declares no such property (properties: {known})"],
            )
        values[name] = value
    warnings = []
    for prop in spec.properties:
        if prop.name in values:
            continue
        if prop.default is not None:
            values[prop.name] = prop.default
        elif prop.required:
            warnings.append(
                f'warning: required property {prop.name!r} is not set (--prop "{prop.name}=…")'
            )
    return values, warnings


def call_parameters(spec: Spec, given: list[tuple[str, str]], region: str) -> dict[str, Any]:
    """Parameter values from the command line, checked against the spec's names.

    Values stay text (the engine types them by the spec, DESIGN 4.8), except phones, which
    are normalized to E.164 with `region` as the portal does before a call: `phone_formats`
    then renders the national forms from it.
    """
    params: dict[str, Any] = {}
    for name, value in given:
        if spec.type_of(name) is None and name not in spec.variables:
            raise CommandExit(
                EXIT_SPEC_ERROR,
                [
                    f"--param {name!r}: not a declared parameter, variable or system value "
                    "(declare it in the spec's parameters)"
                ],
            )
        if spec.type_of(name) == "phone":
            params[name] = coerce_value(value, "phone", region=region)
        else:
            params[name] = value
    return params


def describe_request(summary: Mapping[str, Any]) -> list[str]:
    """A redacted request summary as a few lines: request line, headers, body."""
    url = summary["url"]
    query = summary.get("query") or []
    if query:
        url += ("&" if "?" in url else "?") + urlencode([tuple(p) for p in query])
    lines = [f"{summary['method']} {url}"]
    for name, value in (summary.get("headers") or {}).items():
        lines.append(f"{name}: {value}")
    if summary.get("content_type"):
        lines.append(f"Content-Type: {summary['content_type']}")
    if summary.get("body") is not None:
        body = summary["body"]
        lines.append("")
        lines.append(body if isinstance(body, str) else _json_text(body, indent=2))
    return lines


# -------------------------------------------------------------------------------- webhook


def signature_options(
    spec: Spec, properties: Mapping[str, Any], url: str
) -> tuple[dict[str, Any], str | None]:
    """Extra `match_webhook` arguments that make it check the spec's signature, as the portal.

    Returns (arguments, note). The note says why the signature is not checked: this engine's
    `match_webhook` cannot verify signatures (no `integrations.engine.signatures`).
    """
    if not spec.webhook_signature:
        return {}, None
    if "properties" not in inspect.signature(match_webhook).parameters:
        return {}, "note: signature not checked (this engine does not verify webhook signatures)"
    return {"properties": properties, "url": url}, None


def event_dict(match: WebhookMatch) -> dict[str, Any]:
    """What `spec webhook --json` prints for a matched request."""
    return {
        "event_type": match.event_type,
        "event_key": match.event_key,
        "model_index": match.model_index,
        "values": match.values,
    }


def event_text(match: WebhookMatch) -> str:
    """A matched event for people: type and model, then the named values, then the rest."""
    lines = [
        f"event_type: {match.event_type}",
        f"event_key: {match.event_key} (Webhook model {match.model_index})",
    ]
    shown = {"event_key"}
    for name in _EVENT_FIELDS:
        if name in match.values:
            lines.append(f"{name}: {_display(match.values[name])}")
            shown.add(name)
    for name, value in match.values.items():
        if name not in shown:
            lines.append(f"{name}: {_display(value)}")
    return "\n".join(lines)


def _display(value: Any) -> str:
    return value if isinstance(value, str) else _json_text(value)


# -------------------------------------------------------------------------------- command


class Command(BaseCommand):
    """Validate, grade, call and feed webhooks to spec files."""

    help = "Validate, grade (readiness), call and feed webhooks to integration spec files."
    # Specs are files: no database, no system checks needed.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """One subcommand per action."""
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        validate = actions.add_parser(
            "validate", help="check spec files; every problem as PATH: /pointer: message"
        )
        validate.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")

        readiness = actions.add_parser("readiness", help="grade a crm spec (App Connect)")
        readiness.add_argument("path", metavar="PATH")
        readiness.add_argument("--json", action="store_true", help="the report as JSON")

        call = actions.add_parser("call", help="run one method against the live API")
        call.add_argument("path", metavar="PATH")
        call.add_argument("method", metavar="METHOD", help="an API method name (FindContact)")
        call.add_argument(
            "--prop",
            action="append",
            metavar='"NAME=VALUE"',
            help="a property value (repeatable; names may contain spaces)",
        )
        call.add_argument(
            "--param",
            action="append",
            metavar="NAME=VALUE",
            help="a parameter or system value (repeatable), typed by the spec",
        )
        call.add_argument("--token", help="an OAuth2/token access token to use")
        call.add_argument(
            "--region", default="US", help="default phone region (national formats); US"
        )
        call.add_argument(
            "--allow-private",
            action="store_true",
            help="allow private and loopback addresses (the sandbox on 127.0.0.1)",
        )
        call.add_argument("--json", action="store_true", help="print only the result as JSON")
        call.add_argument(
            "--dry-run", action="store_true", help="print the requests, do not send them"
        )
        call.add_argument(
            "--timeout", type=float, default=10.0, help="seconds per request unless the spec says"
        )
        call.add_argument(
            "--attempts",
            type=int,
            default=1,
            help="attempts for retryable failures (the portal's workers use 3); default 1",
        )

        webhook = actions.add_parser(
            "webhook", help="match one inbound request against the Webhook models"
        )
        webhook.add_argument("path", metavar="PATH")
        webhook.add_argument("--method", default="POST", help="HTTP method; POST")
        webhook.add_argument("--content-type", default="application/json")
        webhook.add_argument(
            "--body-file", help="the raw request body ('-' for stdin); none for an empty body"
        )
        webhook.add_argument("--query", action="append", metavar="K=V", help="repeatable")
        webhook.add_argument("--header", action="append", metavar="K=V", help="repeatable")
        webhook.add_argument(
            "--prop", action="append", metavar='"NAME=VALUE"', help="property values (secrets)"
        )
        webhook.add_argument("--region", default="US", help="region for phone numbers; US")
        webhook.add_argument(
            "--url", help="the full URL the provider posted to (signed by some providers)"
        )
        webhook.add_argument("--json", action="store_true", help="the event as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action; exit 1 for a spec problem, 2 for a third-party failure."""
        action = options["action"]
        try:
            if action == "validate":
                self.validate(options)
            elif action == "readiness":
                self.readiness(options)
            elif action == "call":
                self.call(options)
            else:
                self.webhook(options)
        except CommandExit as stop:
            for line in stop.lines:
                self.stderr.write(line)
            sys.exit(stop.code)

    # ----------------------------------------------------------------------------- actions

    def validate(self, options: Mapping[str, Any]) -> None:
        files = _spec_files(options["paths"])
        if not files:
            raise CommandExit(EXIT_SPEC_ERROR, ["no spec files found"])
        failed: list[str] = []
        for path in files:
            _spec, problems = read_spec(path)
            if problems:
                failed.extend(f"{path}: {problem}" for problem in problems)
            else:
                self.stdout.write(f"{path}: ok")
        if failed:
            raise CommandExit(EXIT_SPEC_ERROR, failed)

    def readiness(self, options: Mapping[str, Any]) -> None:
        spec = _load(options["path"])
        try:
            if options["json"]:
                self.stdout.write(_json_text(readiness_report(spec).to_dict(), indent=2))
            else:
                self.stdout.write(readiness_text(spec))
        except SpecError as error:
            raise CommandExit(
                EXIT_SPEC_ERROR, [f"{options['path']}: {p}" for p in error.problems]
            ) from None

    def call(self, options: Mapping[str, Any]) -> None:
        spec = _load(options["path"])
        method = options["method"]
        if not spec.has_method(method):
            names = ", ".join(spec.methods) or "none"
            raise CommandExit(
                EXIT_SPEC_ERROR, [f"/API/{method}: the spec has no {method} method ({names})"]
            )
        region = str(options["region"] or "US").upper()
        properties, warnings = call_properties(spec, _pairs(options["prop"], "--prop"))
        params = call_parameters(spec, _pairs(options["param"], "--param"), region)
        for warning in warnings:
            self.stderr.write(warning)
        token = options.get("token")
        session = HttpSession(
            allow_private_networks=options["allow_private"],
            default_timeout=options["timeout"],
            max_attempts=max(1, options["attempts"]),
        )
        client = SpecClient(
            spec,
            properties=properties,
            session=session,
            token_store=InMemoryTokenStore(TokenSet(access_token=token) if token else None),
            region=region,
        )
        try:
            if options["dry_run"]:
                summaries = [request_summary(r) for r in client.dry_run(method, params)]
                self._print_dry_run(spec, summaries, as_json=options["json"])
                return
            result = client.call(method, params)
        except SpecError as error:
            raise CommandExit(EXIT_SPEC_ERROR, [str(p) for p in error.problems]) from None
        except IntegrationError as error:
            status = f"HTTP {error.status}" if error.status else "no HTTP response"
            lines = [f"{method} failed ({status}): {error.message}"]
            if error.status is None and "private network" in error.message:
                lines.append("a local server (the sandbox) needs --allow-private")
            if error.auth_failed:
                lines.append("the credentials were rejected: check --token or the --prop values")
            raise CommandExit(EXIT_INTEGRATION_ERROR, lines) from None
        finally:
            session.close()
        self._print_result(
            result, as_json=options["json"], secrets=spec.secret_values(result.values)
        )

    def _print_dry_run(self, spec: Spec, summaries: list[dict[str, Any]], *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(_json_text(summaries, indent=2))
            return
        for index, summary in enumerate(summaries):
            if index:
                self.stdout.write("")
            self.stdout.write("\n".join(describe_request(summary)))
        if spec.auth_type != "none":
            self.stdout.write(f"\n(+ {spec.auth_type} authentication, added when sent)")

    def _print_result(self, result: CallResult, *, as_json: bool, secrets: set[str]) -> None:
        """The mapped result; values of secret parameters the call captured are redacted."""
        output = result.to_json()
        if secrets:
            output = json.loads(redact(json.dumps(output), secrets))
        if as_json:
            self.stdout.write(_json_text(output))
            return
        for request in result.requests:
            summary = request_summary(request)
            self.stdout.write(f"→ {describe_request(summary)[0]}")
        if result.phone_used is not None:
            self.stdout.write(f"phone sent as: {result.phone_used}")
        if isinstance(output, list):
            count = len(output)
            self.stdout.write(f"{count} record{'s' if count != 1 else ''}:")
        self.stdout.write(_json_text(output, indent=2))

    def webhook(self, options: Mapping[str, Any]) -> None:
        spec = _load(options["path"])
        if not spec.webhooks:
            raise CommandExit(
                EXIT_SPEC_ERROR, [f"{options['path']}: the spec has no Webhook models"]
            )
        body = self._read_body(options.get("body_file"))
        query: dict[str, list[str]] = {}
        for name, value in _pairs(options["query"], "--query"):
            query.setdefault(name, []).append(value)
        headers = dict(_pairs(options["header"], "--header"))
        content_type = options["content_type"]
        headers.setdefault("Content-Type", content_type)
        properties, _warnings = call_properties(spec, _pairs(options["prop"], "--prop"))
        url = options.get("url") or ""
        if url and query and "?" not in url:
            url += "?" + urlencode([(k, v) for k, values in query.items() for v in values])
        extra, note = signature_options(spec, properties, url)
        if note:
            self.stderr.write(note)
        try:
            match = match_webhook(
                spec,
                method=options["method"],
                content_type=content_type,
                body=body,
                query=query,
                headers=headers,
                region=str(options["region"] or "US").upper(),
                **extra,
            )
        except WebhookRejected as rejected:
            raise CommandExit(
                EXIT_SPEC_ERROR, [f"rejected ({rejected.status}): {rejected.message}"]
            ) from None
        except SpecError as error:
            raise CommandExit(EXIT_SPEC_ERROR, [str(p) for p in error.problems]) from None
        if match is None:
            raise CommandExit(
                EXIT_SPEC_ERROR,
                [
                    "no Webhook model matches this request (the portal answers 200 and "
                    "records it as ignored)"
                ],
            )
        if options["json"]:
            self.stdout.write(_json_text(event_dict(match), indent=2))
        else:
            self.stdout.write(event_text(match))

    @staticmethod
    def _read_body(body_file: str | None) -> bytes:
        if not body_file:
            return b""
        if body_file == "-":
            return sys.stdin.buffer.read()
        try:
            return pathlib.Path(body_file).read_bytes()
        except OSError as error:
            raise CommandExit(
                EXIT_SPEC_ERROR, [f"{body_file}: cannot read the body: {error.strerror}"]
            ) from None
