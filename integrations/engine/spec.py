"""Loading and validating spec files (DESIGN 4, 4.7).

`load_spec` parses a spec, checks it against the published JSON Schema
(`integrations/specs/schema/spec-v1.json`) and then against the rules a schema cannot express:
every placeholder names something declared, captures go to declared parameters or system
values, methods have a URL, expressions parse, variables have no cycles, a `crm` spec has
`FindContact` and an `sms` spec has `SendMessage`. Every problem is reported at once, each with
the JSON pointer of the offending value (`/API/FindContact/request_path: unknown placeholder
$phon$`), so a spec author fixes them in one pass.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import pathlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import jsonschema

from integrations.engine.errors import Problem, SpecError
from integrations.engine.expressions import (
    compile_expression,
    expression_problems,
    order_variables,
)
from integrations.engine.templating import (
    format_placeholder,
    iter_template_strings,
    json_pointer,
    placeholder_names,
    single_placeholder,
    template_problems,
)

__all__ = [
    "CRM_METHODS",
    "EVENT_TYPES",
    "PARAMETER_TYPES",
    "PHONE_FORMAT_PATTERN",
    "SCHEMA_PATH",
    "SMS_METHODS",
    "SYSTEM_VALUES",
    "VALUE_TYPES",
    "PropertyDef",
    "Spec",
    "load_spec",
    "spec_schema",
    "validate_spec",
]

SCHEMA_PATH: Final = pathlib.Path(__file__).resolve().parent.parent / "specs/schema/spec-v1.json"

VALUE_TYPES: Final = frozenset(
    {"string", "number", "integer", "boolean", "ISO8601Date", "phone", "object", "array"}
)
# A parameter may also be typed `secret`: a string whose value is redacted wherever it
# appears (delivery log, error messages, dry runs), like a secret property's.
SECRET_PARAMETER_TYPE: Final = "secret"
PARAMETER_TYPES: Final = VALUE_TYPES | {SECRET_PARAMETER_TYPE}

# The values the portal supplies (DESIGN 4.2), with their types. A spec may use them anywhere
# and capture them from responses; declaring one in `parameters` overrides its type (the seed
# declares `user_id` as a number). The auth names at the end are filled by the auth module
# (token exchange captures and OAuth callbacks); `region` is the org's default phone region.
SYSTEM_VALUES: Final[Mapping[str, str]] = {
    # Call
    "call_id": "string",
    "call_direction": "string",
    "call_status": "string",
    "call_start": "ISO8601Date",
    "call_answer": "ISO8601Date",
    "call_end": "ISO8601Date",
    "call_duration": "integer",
    "caller_number": "phone",
    "caller_name": "string",
    "called_number": "phone",
    "phone": "phone",
    "extension": "string",
    "domain": "string",
    "recording_url": "string",
    "recording_file": "string",
    "recording_base64": "string",
    "voicemail_url": "string",
    "note": "string",
    # Users
    "user_id": "string",
    "user_name": "string",
    "user_email": "string",
    "pbx_user_id": "string",
    "pbx_user_email": "string",
    # Contacts
    "contact_id": "string",
    "contact_name": "string",
    "contact_first_name": "string",
    "contact_last_name": "string",
    "contact_email": "string",
    "contact_phone": "phone",
    "contact_company": "string",
    "account_id": "string",
    "query": "string",
    # Activity
    "activity_id": "string",
    "activity_type": "string",
    "activity_status": "string",
    "subject": "string",
    # SMS
    "from": "phone",
    "to": "phone",
    "content": "string",
    "text": "string",
    "url": "string",
    "messageid": "string",
    "message_ref": "string",
    "status": "string",
    "event_key": "string",
    # Portal
    "clicktocall_url": "string",
    "callcontrol_url": "string",
    "webhook_url": "string",
    "org_id": "string",
    "now": "ISO8601Date",
    "region": "string",
    # Authentication (set by the auth module)
    "access_token": "string",
    "refresh_token": "string",
    "expires_in": "integer",
    "token_type": "string",
    "redirect_uri": "string",
}

EVENT_TYPES: Final = frozenset({"message", "mms", "status"})
SPEC_CLASSES: Final = frozenset({"crm", "sms"})
AUTH_TYPES: Final = ("basic", "bearer", "oauth2", "token", "none")
PHONE_FORMAT_PATTERN: Final = re.compile(
    r"^(e164|national|international|digits|national_digits|rfc3966|last[0-9]{1,2})$"
)

# Method names the portal calls (DESIGN 4.5); others are allowed (called by steps or the CLI).
CRM_METHODS: Final = (
    "Users",
    "Contacts",
    "Accounts",
    "FindContact",
    "SearchContacts",
    "CreateContact",
    "UpdateContact",
    "DeleteContact",
    "CreateActivity",
    "UpdateActivity",
    "ChangeActivityStatus",
    "UploadRecording",
    "GetActivity",
    "CallRinging",
    "CallAnswered",
    "CallEnded",
    "CallMissed",
    "CallDialed",
    "CreateMessageLog",
    "UpdateMessageLog",
)
SMS_METHODS: Final = ("SendMessage", "SendFile")

_INDEX_KEY = re.compile(r"^\[-?\d+\]$")
_BODYLESS_METHODS = frozenset({"GET", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Property labels that hold credentials even when a seed-style string list does not say so.
_SECRET_LABEL = re.compile(r"secret|password|passwd|token|api[ _-]?key|private[ _-]?key", re.I)
# Authentication fields whose property values are credentials.
_SECRET_AUTH_FIELDS = frozenset({"password", "client_secret", "token", "secret", "api_key"})


@cache
def spec_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of spec files."""
    with SCHEMA_PATH.open(encoding="utf-8") as handle:
        return json.load(handle)


@cache
def _schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(spec_schema())


@dataclass(frozen=True)
class PropertyDef:
    """One field of the admin form. A seed-style string item is a required string field."""

    name: str
    type: str = "string"
    required: bool = True
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] = ()
    secret: bool = False
    label: str = ""

    @property
    def value_type(self) -> str:
        """The parameter type of this property's value."""
        return {"number": "number", "boolean": "boolean"}.get(self.type, "string")


@dataclass(frozen=True)
class Spec:
    """A validated spec. `raw` is the parsed document; the other fields are views of it.

    `methods` maps a method name to its request dict, or to a list of step dicts (4.9).
    `types` gives the type of every typed name (system values, overridden by parameters, and
    properties). `variable_order` evaluates variables after those they use.
    """

    raw: dict[str, Any]
    id: str
    name: str
    logo: str
    spec_class: str
    var_char: str
    properties: tuple[PropertyDef, ...]
    parameters: dict[str, str]
    variables: dict[str, str]
    methods: dict[str, dict[str, Any] | list[dict[str, Any]]]
    authentication: dict[str, Any]
    webhooks: list[dict[str, Any]]
    webhook_signature: dict[str, Any] | None
    install: list[dict[str, Any]]
    uninstall: list[dict[str, Any]]
    contact_url: str | None
    activity_url: str | None
    resource_url: str | None
    request_headers: dict[str, str]
    types: dict[str, str] = field(default_factory=dict)
    variable_order: tuple[str, ...] = ()
    installation_value_names: frozenset[str] = frozenset()
    secret_property_names: frozenset[str] = frozenset()
    secret_parameter_names: frozenset[str] = frozenset()

    @property
    def auth_type(self) -> str:
        """The authentication type; "none" when the spec has no authentication block."""
        return str(self.authentication.get("type", "none"))

    @property
    def property_names(self) -> list[str]:
        return [p.name for p in self.properties]

    @property
    def raw_url_names(self) -> frozenset[str]:
        """Names whose values go into URLs as written: properties and installation values."""
        return frozenset(self.property_names) | self.installation_value_names

    def property(self, name: str) -> PropertyDef | None:
        """The property with this name, or None."""
        return next((p for p in self.properties if p.name == name), None)

    def has_method(self, name: str) -> bool:
        """True if the spec defines API method `name`."""
        return name in self.methods

    def steps(self, name: str) -> list[dict[str, Any]]:
        """The steps of method `name` (one step for a plain method). Raises KeyError."""
        method = self.methods[name]
        return list(method) if isinstance(method, list) else [method]

    def webhook_pointer(self, index: int) -> str:
        """The JSON pointer of webhook model `index` (`/Webhook/0`, `/Webhook/models/0`)."""
        base = "/Webhook/models" if isinstance(self.raw.get("Webhook"), dict) else "/Webhook"
        return f"{base}/{index}"

    def type_of(self, name: str) -> str | None:
        """The declared type of a name (parameter, system value or property), or None."""
        return self.types.get(name)

    def secret_values(self, properties: Mapping[str, Any]) -> set[str]:
        """Values of secret properties and secret parameters in `properties` (name → value),
        for redaction.

        Secret properties are those typed `secret` (or flagged), those whose label says they
        hold a credential, and those used as a password, client secret or token by the
        authentication block. Secret parameters are those typed `secret` (a token an
        `Install` request or the token response captures, kept as an installation value).
        Empty values are left out.
        """
        secrets = set()
        for name in self.secret_property_names | self.secret_parameter_names:
            value = properties.get(name)
            if value not in (None, "") and not isinstance(value, bool):
                secrets.add(str(value))
        return secrets

    def secret_response_keys(self, response_map: Any) -> frozenset[str]:
        """Keys of `response_map` whose value captures a secret parameter (for redacting
        the logged response: the value is not known until the response is mapped)."""
        keys: set[str] = set()
        if not self.secret_parameter_names:
            return frozenset()
        pending = [response_map]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                for key, child in node.items():
                    if isinstance(child, str):
                        name = single_placeholder(child, self.var_char)
                        if name in self.secret_parameter_names:
                            keys.add(str(key))
                    else:
                        pending.append(child)
            elif isinstance(node, list):
                pending.extend(node)
        return frozenset(keys)


# --------------------------------------------------------------------------------------------
# Loading


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse(source: dict[str, Any] | str | bytes | pathlib.Path) -> Any:
    if isinstance(source, dict):
        return source
    if isinstance(source, pathlib.Path):
        text = source.read_text(encoding="utf-8")
    elif isinstance(source, bytes):
        text = source.decode("utf-8-sig")
    elif isinstance(source, str):
        text = source
        if not source.lstrip().startswith(("{", "[")):
            text = pathlib.Path(source).read_text(encoding="utf-8")
    else:
        raise SpecError(f"cannot load a spec from {type(source).__name__}")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise SpecError(f"not valid JSON: {exc}") from None


def load_spec(source: dict[str, Any] | str | bytes | pathlib.Path) -> Spec:
    """Parse and validate a spec.

    `source` is a parsed dict, JSON text (str or bytes), or a path (`pathlib.Path`, or a str
    that does not start with `{`). Raises SpecError listing every problem found.
    """
    data = _parse(source)
    problems = validate_spec(data)
    if problems:
        raise SpecError(problems)
    return _build(data)


def _property_defs(items: Iterable[Any]) -> tuple[PropertyDef, ...]:
    defs = []
    for item in items:
        if isinstance(item, str):
            defs.append(PropertyDef(name=item, secret=bool(_SECRET_LABEL.search(item))))
            continue
        kind = item.get("type", "string")
        choices = tuple(
            c["value"] if isinstance(c, dict) else c for c in item.get("choices", ()) or ()
        )
        defs.append(
            PropertyDef(
                name=item["name"],
                type=kind,
                required=bool(item.get("required", False)),
                default=item.get("default"),
                help=item.get("help", ""),
                choices=choices,
                secret=kind == "secret" or bool(item.get("secret", False)),
                label=item.get("label", ""),
            )
        )
    return tuple(defs)


def _webhook_parts(data: dict[str, Any]) -> tuple[list[Any], dict[str, Any] | None]:
    webhook = data.get("Webhook")
    if isinstance(webhook, dict):
        models = webhook.get("models")
        return (models if isinstance(models, list) else []), webhook.get("signature")
    if isinstance(webhook, list):
        return webhook, None
    return [], None


def _captures(template: Any, var_char: str) -> set[str]:
    """Names captured by a response map (single-placeholder leaves)."""
    names = set()
    for _pointer, text in iter_template_strings(template, keys=False):
        name = single_placeholder(text, var_char)
        if name is not None:
            names.add(name)
    return names


def _build(data: dict[str, Any]) -> Spec:
    var_char = data.get("var_char", "$")
    properties = _property_defs(data.get("properties", []))
    parameters = dict(data.get("parameters", {}))
    variables = dict(data.get("variables", {}))
    authentication = dict(data.get("authentication") or {"type": "none"})
    webhooks, signature = _webhook_parts(data)

    types = {**SYSTEM_VALUES}
    for prop in properties:
        types[prop.name] = prop.value_type
    types.update(
        {
            name: ("string" if kind == SECRET_PARAMETER_TYPE else kind)
            for name, kind in parameters.items()
        }
    )

    installation_names: set[str] = set()
    for method in data.get("Install", []):
        installation_names |= _captures(method.get("response_map"), var_char)
    installation_names |= _captures(authentication.get("token_response_map"), var_char)

    secret_names = {p.name for p in properties if p.secret}
    for key, value in authentication.items():
        if key in _SECRET_AUTH_FIELDS and isinstance(value, str):
            secret_names.update(placeholder_names(value, var_char))
    secret_names &= {p.name for p in properties}

    order, _cycles = order_variables(variables, var_char)
    return Spec(
        raw=data,
        id=data["id"],
        name=data["name"],
        logo=data.get("logo", ""),
        spec_class=data["class"],
        var_char=var_char,
        properties=properties,
        parameters=parameters,
        variables=variables,
        methods=dict(data.get("API", {})),
        authentication=authentication,
        webhooks=webhooks,
        webhook_signature=signature,
        install=list(data.get("Install", [])),
        uninstall=list(data.get("Uninstall", [])),
        contact_url=data.get("contact_url"),
        activity_url=data.get("activity_url"),
        resource_url=data.get("resource_url"),
        request_headers=dict(data.get("request_headers", {})),
        types=types,
        variable_order=tuple(order),
        installation_value_names=frozenset(installation_names),
        secret_property_names=frozenset(secret_names),
        secret_parameter_names=frozenset(
            name for name, kind in parameters.items() if kind == SECRET_PARAMETER_TYPE
        ),
    )


# --------------------------------------------------------------------------------------------
# Validation


def _schema_message(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "enum" and path[-2:-1] == ["authentication"] and path[-1] == "type":
        return (
            f"unknown authentication type {error.instance!r} "
            f"(expected one of {', '.join(AUTH_TYPES)})"
        )
    if error.validator == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        return f"{error.instance!r} is not one of {options}"
    return error.message


def _unknown_key_problems(error: jsonschema.ValidationError) -> list[Problem]:
    """One problem per unknown key, at the key's own pointer, with the likely intended key.

    jsonschema words these as "'timout' does not match any of the regexes: '^(x-|_)'" at the
    enclosing object; a spec author needs the key named where it is and what it should be.
    """
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = [str(k) for k in schema.get("properties", {})]
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    instance = error.instance if isinstance(error.instance, dict) else {}
    problems = []
    for key in instance:
        if key in known or any(p.search(key) for p in patterns):
            continue
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        problems.append(Problem(json_pointer(*error.absolute_path, key), message))
    return problems


def _branch_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For a failed oneOf, every error of the branch meant for this kind of value.

    "is not valid under any of the given schemas" helps nobody, and neither does one error out
    of several. The branches whose type does not even match the value (an array is not the
    object form) are dropped; every error of the branch that remains is reported, each at its
    own pointer. A value that fits no branch's type gets one error naming the types allowed.
    """
    depth = len(error.absolute_path)
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for child in error.context or ():
        branch = child.relative_schema_path[0] if child.relative_schema_path else None
        branches.setdefault(branch, []).append(child)
    if not branches:  # valid under more than one branch: nothing better to say
        return [error]
    type_errors: list[jsonschema.ValidationError] = []
    fitting: list[list[jsonschema.ValidationError]] = []
    for errors in branches.values():
        mismatch = [e for e in errors if e.validator == "type" and len(e.absolute_path) == depth]
        if mismatch:
            type_errors.extend(mismatch)
        else:
            fitting.append(errors)
    if not fitting:
        types: list[str] = []
        for e in type_errors:
            value = e.validator_value
            for kind in value if isinstance(value, list) else [value]:
                if kind not in types:
                    types.append(kind)
        if not types:
            return [error]
        message = f"{error.instance!r} is not of type " + " or ".join(repr(t) for t in types)
        return [
            jsonschema.ValidationError(
                message, validator="type", path=error.absolute_path, instance=error.instance
            )
        ]
    # Several branches of the right type (rare): the one the best single error comes from.
    best = jsonschema.exceptions.best_match(e for errors in fitting for e in errors)
    chosen = next(errors for errors in fitting if best in errors)
    expanded: list[jsonschema.ValidationError] = []
    for child in chosen:
        if child.validator == "oneOf" and child.context:
            expanded.extend(_branch_errors(child))
        else:
            expanded.append(child)
    return expanded


def _schema_problems(data: Any) -> list[Problem]:
    problems = []
    for raw_error in _schema_validator().iter_errors(data):
        errors = [raw_error]
        if raw_error.validator == "oneOf" and raw_error.context:
            errors = _branch_errors(raw_error)
        for error in errors:
            unknown = []
            if error.validator == "additionalProperties":
                unknown = _unknown_key_problems(error)
            if unknown:
                problems.extend(unknown)
            else:
                pointer = json_pointer(*error.absolute_path)
                problems.append(Problem(pointer, _schema_message(error)))
    return problems


class _Checker:
    """Semantic checks over a parsed spec; tolerant of shapes the schema already rejected."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[Problem] = []
        var_char = data.get("var_char", "$")
        self.var_char = var_char if var_char in ("$", "{}") else "$"
        props = data.get("properties", [])
        self.property_names = [
            p if isinstance(p, str) else p.get("name")
            for p in (props if isinstance(props, list) else [])
            if isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("name"), str))
        ]
        params = data.get("parameters", {})
        self.parameters = params if isinstance(params, dict) else {}
        variables = data.get("variables", {})
        self.variables = variables if isinstance(variables, dict) else {}
        self.capturable = set(self.parameters) | set(SYSTEM_VALUES)
        self.known = set(self.property_names) | self.capturable | set(self.variables)
        # Values captured at install time or with the OAuth tokens: set before any method runs.
        self.installation_names: set[str] = set()
        install = data.get("Install")
        for method in install if isinstance(install, list) else []:
            if isinstance(method, dict):
                self.installation_names |= _captures(method.get("response_map"), self.var_char)
        auth = data.get("authentication")
        self.token_names: set[str] = set()
        if isinstance(auth, dict):
            self.token_names = _captures(auth.get("token_response_map"), self.var_char)
        self.installation_names |= self.token_names

    def add(self, pointer: str, message: str) -> None:
        self.problems.append(Problem(pointer, message))

    def placeholder(self, name: str) -> str:
        return format_placeholder(name, self.var_char)

    # templates ---------------------------------------------------------------------------

    def template(self, pointer: str, text: Any) -> None:
        """Check one template string: syntax and known names."""
        if not isinstance(text, str):
            return
        for message in template_problems(text, self.var_char):
            self.add(pointer, message)
        for name in placeholder_names(text, self.var_char):
            if name not in self.known:
                self.add(pointer, f"unknown placeholder {self.placeholder(name)}")

    def templates(self, pointer: str, template: Any) -> None:
        for child_pointer, text in iter_template_strings(template, pointer):
            self.template(child_pointer, text)

    def expression(self, pointer: str, expression: Any) -> None:
        if not isinstance(expression, str):
            return
        for message in expression_problems(expression, self.var_char, self.known):
            self.add(pointer, message)

    def capture_map(self, pointer: str, template: Any, what: str = "response_map") -> None:
        """Check a response map or webhook shape: leaves capture declared names."""
        if isinstance(template, str):
            self._capture_leaf(pointer, template, what, literal_ok=True)
        elif isinstance(template, dict):
            for key, child in template.items():
                child_pointer = pointer + json_pointer(key)
                numbered = key.endswith("*") and len(key) > 1
                if numbered and single_placeholder(child, self.var_char) is None:
                    self.add(
                        child_pointer,
                        f"a {key!r} key collects numbered fields into one placeholder; "
                        "its value must be exactly one placeholder",
                    )
                    continue
                if not _INDEX_KEY.match(key) and placeholder_names(key, self.var_char):
                    self.add(child_pointer, f"placeholders are not allowed in {what} keys")
                self.capture_map(child_pointer, child, what)
        elif isinstance(template, list):
            for index, child in enumerate(template):
                self.capture_map(pointer + json_pointer(index), child, what)

    def _capture_leaf(self, pointer: str, text: str, what: str, *, literal_ok: bool) -> None:
        for message in template_problems(text, self.var_char):
            self.add(pointer, message)
        name = single_placeholder(text, self.var_char)
        if name is None:
            if placeholder_names(text, self.var_char):
                self.add(pointer, f"a {what} value must be exactly one placeholder")
            return
        if name not in self.capturable:
            if name in self.known:
                self.add(
                    pointer,
                    f"{self.placeholder(name)} is a property or variable and cannot be "
                    "captured; declare a parameter",
                )
            else:
                self.add(
                    pointer,
                    f"captures undeclared name {self.placeholder(name)} (declare it in parameters)",
                )

    # methods -----------------------------------------------------------------------------

    def method_or_steps(self, pointer: str, method: Any) -> None:
        if isinstance(method, list):
            for index, step in enumerate(method):
                self.method(pointer + json_pointer(index), step, step_index=index)
            self.step_order(pointer, method, supplied=self.installation_names)
        else:
            self.method(pointer, method)

    def step_order(
        self,
        pointer: str,
        steps: list[Any],
        *,
        supplied: Iterable[str] = (),
        noun: str = "step",
        prefix: str = "",
    ) -> None:
        """A step may only use a value a later step captures once an earlier step set it.

        Every name some step captures (a declared parameter or a system value alike) that a
        step uses while only later steps capture it is a mistake in the order of the steps:
        when the step runs, nothing has set it yet. Names in `supplied` are set before the
        sequence runs (installation values, for API methods) and are not checked. `noun` and
        `prefix` word the problem ("step 0", "Install request 0").
        """
        captured_by: list[set[str]] = [self.step_captures(step) for step in steps]
        exempt = set(supplied) | set(self.property_names)
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            earlier = set().union(*captured_by[:index]) if index else set()
            later = set().union(*captured_by[index + 1 :])
            for name in sorted((self.step_uses(step) & later) - earlier - exempt):
                producer = next(j for j in range(index + 1, len(steps)) if name in captured_by[j])
                self.add(
                    pointer + json_pointer(index),
                    f"{prefix}{noun} {index} uses {self.placeholder(name)}, which only "
                    f"{prefix}{noun} {producer} captures (later): reorder the {noun}s",
                )

    def step_captures(self, step: Any) -> set[str]:
        """Names a step sets: its response map, response headers and outputs."""
        names: set[str] = set()
        if not isinstance(step, dict):
            return names
        names |= _captures(step.get("response_map"), self.var_char)
        headers_map = step.get("response_headers_map")
        if isinstance(headers_map, dict):
            for text in headers_map.values():
                name = single_placeholder(text, self.var_char)
                if name is not None:
                    names.add(name)
        outputs = step.get("outputs")
        if isinstance(outputs, dict):
            names |= set(outputs)
        return names

    def step_uses(self, step: dict[str, Any]) -> set[str]:
        """Names a step reads when it is rendered (URL, headers, parameters, when)."""
        used: set[str] = set()
        for key in ("request_path", "request_url", "request_headers", "request_parameters"):
            for _pointer, text in iter_template_strings(step.get(key)):
                used.update(placeholder_names(text, self.var_char))
        # Spec-wide headers go with every request, and resource_url prefixes request_path.
        shared: list[Any] = [self.data.get("request_headers")]
        if "request_path" in step:
            shared.append(self.data.get("resource_url"))
        for template in shared:
            for _pointer, text in iter_template_strings(template):
                used.update(placeholder_names(text, self.var_char))
        condition = step.get("when")
        if isinstance(condition, str):
            with contextlib.suppress(SpecError):  # a broken one is reported elsewhere
                used.update(compile_expression(condition, self.var_char).names)
        # Variables used by the step read their own inputs at the same moment.
        pending = [n for n in used if n in self.variables]
        seen: set[str] = set()
        while pending:
            variable = pending.pop()
            if variable in seen or not isinstance(self.variables.get(variable), str):
                continue
            seen.add(variable)
            try:
                inputs = compile_expression(self.variables[variable], self.var_char).names
            except SpecError:
                continue
            used.update(inputs)
            pending.extend(n for n in inputs if n in self.variables)
        return used

    def method(self, pointer: str, method: Any, *, step_index: int | None = None) -> None:
        if not isinstance(method, dict):
            return
        has_path = "request_path" in method
        has_url = "request_url" in method
        if not has_path and not has_url:
            self.add(pointer, "method has no request_path or request_url")
        elif has_path and has_url:
            self.add(pointer, "use request_path or request_url, not both")
        if has_path and not self.data.get("resource_url"):
            self.add(pointer + "/request_path", "request_path needs a top-level resource_url")
        for key in ("request_path", "request_url"):
            self.template(pointer + json_pointer(key), method.get(key))
        headers = method.get("request_headers")
        if isinstance(headers, dict):
            self.templates(pointer + "/request_headers", dict(headers.items()))
        parameters = method.get("request_parameters")
        self.templates(pointer + "/request_parameters", parameters)

        http_method = str(method.get("request_method", "")).upper()
        content_type = str(method.get("request_content_type", "application/json")).lower()
        if http_method in _BODYLESS_METHODS and isinstance(parameters, list):
            self.add(
                pointer + "/request_parameters",
                f"{http_method} sends request_parameters as a query: use an object",
            )
        if (
            content_type.startswith(_FORM_TYPES)
            and parameters is not None
            and not isinstance(parameters, dict)
            and http_method not in _BODYLESS_METHODS
        ):
            self.add(
                pointer + "/request_parameters",
                f"{content_type} needs request_parameters to be an object",
            )

        if "response_map" in method:
            self.capture_map(pointer + "/response_map", method["response_map"])
        headers_map = method.get("response_headers_map")
        if isinstance(headers_map, dict):
            for name, text in headers_map.items():
                child = pointer + "/response_headers_map" + json_pointer(name)
                if isinstance(text, str):
                    if single_placeholder(text, self.var_char) is None:
                        self.add(child, "a response header maps to exactly one placeholder")
                    else:
                        self._capture_leaf(child, text, "response_headers_map", literal_ok=False)
        outputs = method.get("outputs")
        if isinstance(outputs, dict):
            for name, expression in outputs.items():
                child = pointer + "/outputs" + json_pointer(name)
                if name not in self.capturable:
                    self.add(
                        child,
                        f"output {name!r} is not a declared parameter or system value",
                    )
                self.expression(child, expression)
        for key in ("filter", "when"):
            if key in method:
                self.expression(pointer + json_pointer(key), method[key])
        self.accept_errors(pointer + "/accept_errors", method)
        if step_index == 0 and method.get("mode") == "fallback":
            self.add(pointer + "/mode", "the first step cannot be a fallback")

    def accept_errors(self, pointer: str, method: dict[str, Any]) -> None:
        """`accept_errors` items: not a success already, not listed twice (shape: the schema)."""
        items = method.get("accept_errors")
        if not isinstance(items, list):
            return
        success = method.get("success_codes")
        seen: dict[tuple[Any, Any], int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            child = pointer + json_pointer(index)
            status = item.get("status")
            if isinstance(success, list) and status in success:
                self.add(child + "/status", f"status {status} is already in success_codes")
            key = (status, item.get("body_contains"))
            if key in seen:
                self.add(child, f"the same error answer as item {seen[key]}")
            else:
                seen[key] = index

    # top level ---------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        data = self.data
        self.check_names()
        self.check_secret_parameters()
        self.check_variables()
        for key in ("resource_url", "contact_url", "activity_url"):
            self.template(json_pointer(key), data.get(key))
        headers = data.get("request_headers")
        if isinstance(headers, dict):
            self.templates("/request_headers", headers)
        self.check_authentication()
        api = data.get("API")
        if isinstance(api, dict):
            for name, method in api.items():
                self.method_or_steps(json_pointer("API", name), method)
            spec_class = data.get("class")
            if spec_class == "crm" and "FindContact" not in api:
                self.add("/API", "a crm spec needs a FindContact method")
            if spec_class == "sms" and "SendMessage" not in api:
                self.add("/API", "an sms spec needs a SendMessage method")
        for key in ("Install", "Uninstall"):
            methods = data.get(key)
            if isinstance(methods, list):
                for index, method in enumerate(methods):
                    self.method(json_pointer(key, index), method)
                # Each request sees the captures of those before it, like steps.
                supplied = self.token_names if key == "Install" else self.installation_names
                self.step_order(
                    json_pointer(key), methods, supplied=supplied, noun="request", prefix=key + " "
                )
        self.check_webhooks()
        return self.problems

    def check_names(self) -> None:
        seen: dict[str, int] = {}
        for index, name in enumerate(self.property_names):
            if name in seen:
                self.add(f"/properties/{index}", f"property {name!r} is declared twice")
            seen[name] = index
        props = self.data.get("properties")
        if isinstance(props, list):
            for index, item in enumerate(props):
                is_choice = isinstance(item, dict) and item.get("type") == "choice"
                if is_choice and not item.get("choices"):
                    self.add(f"/properties/{index}", "a choice property needs choices")
        for name in self.parameters:
            if name in seen:
                self.add(
                    json_pointer("parameters", name),
                    f"{name!r} is declared both as a property and a parameter",
                )
        for name in self.variables:
            if name in seen or name in self.parameters:
                kind = "property" if name in seen else "parameter"
                self.add(
                    json_pointer("variables", name),
                    f"{name!r} is declared both as a {kind} and a variable",
                )

    def all_captures(self) -> set[str]:
        """Every name some request of the spec captures (API steps, Install, Uninstall, the
        token request and refresh, the OAuth token response)."""
        methods: list[Any] = []
        api = self.data.get("API")
        for method in api.values() if isinstance(api, dict) else []:
            methods.extend(method if isinstance(method, list) else [method])
        for key in ("Install", "Uninstall"):
            listed = self.data.get(key)
            methods.extend(listed if isinstance(listed, list) else [])
        auth = self.data.get("authentication")
        if isinstance(auth, dict):
            methods.extend(auth.get(key) for key in ("request", "refresh"))
        names: set[str] = set(self.token_names)
        for method in methods:
            names |= self.step_captures(method)
        return names

    def check_secret_parameters(self) -> None:
        """A `secret` parameter is the spec's own, captured somewhere, and never put in a
        page link (`contact_url`, `activity_url` are shown to people)."""
        secret = [name for name, kind in self.parameters.items() if kind == SECRET_PARAMETER_TYPE]
        if not secret:
            return
        captured = self.all_captures()
        for name in secret:
            pointer = json_pointer("parameters", name)
            if name in SYSTEM_VALUES:
                self.add(
                    pointer,
                    f"{self.placeholder(name)} is a system value and cannot be typed secret; "
                    "capture the secret into a parameter of your own",
                )
            elif name not in captured:
                self.add(
                    pointer,
                    f"secret parameter {self.placeholder(name)} is never captured: capture it "
                    "in an Install response_map or authentication.token_response_map, or make "
                    'it a property with "type": "secret" if an admin types it in',
                )
        for key in ("contact_url", "activity_url"):
            text = self.data.get(key)
            if not isinstance(text, str):
                continue
            for name in placeholder_names(text, self.var_char):
                if name in secret:
                    self.add(
                        json_pointer(key),
                        f"{key} is a link shown to people and cannot contain the secret "
                        f"parameter {self.placeholder(name)}",
                    )

    def check_variables(self) -> None:
        for name, expression in self.variables.items():
            self.expression(json_pointer("variables", name), expression)
        _order, cycles = order_variables(
            {k: v for k, v in self.variables.items() if isinstance(v, str)}, self.var_char
        )
        reported: set[str] = set()
        for cycle in cycles:
            if cycle[0] in reported:
                continue
            reported.update(cycle)
            self.add(
                json_pointer("variables", cycle[0]),
                "variables refer to each other in a cycle: " + " → ".join(cycle),
            )

    def check_authentication(self) -> None:
        auth = self.data.get("authentication")
        if not isinstance(auth, dict):
            return
        for key, value in auth.items():
            pointer = json_pointer("authentication", key)
            if key in ("request", "refresh") and isinstance(value, dict):
                self.method(pointer, value)
            elif key in ("token_response_map", "response_map"):
                self.capture_map(pointer, value, key)
            elif key != "type":
                self.templates(pointer, value)

    def check_webhooks(self) -> None:
        webhook = self.data.get("Webhook")
        if isinstance(webhook, dict):
            models = webhook.get("models")
            base = "/Webhook/models"
            signature = webhook.get("signature")
            if isinstance(signature, dict):
                self.check_signature("/Webhook/signature", signature)
        else:
            models, base = webhook, "/Webhook"
        if not isinstance(models, list):
            return
        keys: dict[tuple[Any, Any], int] = {}
        for index, model in enumerate(models):
            pointer = f"{base}/{index}"
            if not isinstance(model, dict):
                continue
            if "event_key" not in model:
                continue  # reported by the schema
            identity = (model.get("event_key"), str(model.get("request_method", "POST")).upper())
            if identity in keys:
                self.add(
                    pointer + "/event_key",
                    f"event_key {model['event_key']!r} is already used by model {keys[identity]}",
                )
            keys[identity] = index
            event_type = model.get("event_type", "message")
            if isinstance(event_type, str) and event_type not in EVENT_TYPES:
                problems = expression_problems(event_type, self.var_char, self.known)
                for message in problems:
                    self.add(
                        pointer + "/event_type",
                        f"not message, mms or status, and not a valid expression: {message}",
                    )
            if "request_parameters" in model:
                self.capture_map(
                    pointer + "/request_parameters", model["request_parameters"], "webhook"
                )
            headers = model.get("request_headers")
            if isinstance(headers, dict):
                for name, text in headers.items():
                    if isinstance(text, str):
                        self._capture_leaf(
                            pointer + "/request_headers" + json_pointer(name),
                            text,
                            "webhook header",
                            literal_ok=True,
                        )
            body = model.get("request_body")
            if isinstance(body, str):
                if single_placeholder(body, self.var_char) is None:
                    self.add(pointer + "/request_body", "request_body must be one placeholder")
                else:
                    self._capture_leaf(
                        pointer + "/request_body", body, "request_body", literal_ok=False
                    )

    def check_signature(self, pointer: str, signature: dict[str, Any]) -> None:
        kind = signature.get("type")
        if kind in ("hmac-sha1", "hmac-sha256", "ed25519", "header") and not signature.get(
            "secret"
        ):
            self.add(pointer, f"a {kind} signature needs a secret")
        if kind in ("hmac-sha1", "hmac-sha256", "ed25519", "header") and not signature.get(
            "header"
        ):
            self.add(pointer, f"a {kind} signature needs the header that carries it")
        if kind == "basic" and not (signature.get("username") and signature.get("password")):
            self.add(pointer, "a basic signature needs username and password")
        payload = signature.get("payload")
        if kind in ("hmac-sha1", "hmac-sha256", "ed25519"):
            if payload == "timestamp.body" and not signature.get("timestamp_header"):
                self.add(
                    pointer + "/payload",
                    "a timestamp.body payload needs timestamp_header (the header with the time)",
                )
            if kind == "ed25519" and payload == "url+sorted-params":
                self.add(pointer + "/payload", "ed25519 signs the body or timestamp.body")
        elif kind in ("basic", "header"):
            for key in ("payload", "encoding", "timestamp_header", "id_header", "tolerance"):
                if key in signature:
                    self.add(pointer + json_pointer(key), f"a {kind} signature has no {key}")
        if signature.get("header_format") == "stripe":
            if kind != "hmac-sha256":
                self.add(
                    pointer + "/header_format",
                    f"the stripe header_format is for hmac-sha256 signatures, not {kind}",
                )
            else:
                # The header itself carries the timestamp and the v1 signatures.
                for key in ("payload", "encoding", "timestamp_header", "id_header", "separator"):
                    if key in signature:
                        self.add(
                            pointer + json_pointer(key),
                            f"a stripe header_format signature has no {key} "
                            '(it signs "{t}.{body}" in hex)',
                        )
                if "prefix" in signature:
                    self.add(
                        pointer + "/prefix",
                        "a stripe header_format signature has no prefix (signatures are v1=...)",
                    )
        for key in ("secret", "username", "password"):
            self.template(pointer + json_pointer(key), signature.get(key))


def validate_spec(data: Any) -> list[Problem]:
    """Every problem of a parsed spec: JSON Schema errors, then semantic checks.

    Returns an empty list for a valid spec. Never raises for a bad spec.
    """
    if not isinstance(data, dict):
        return [Problem("", "a spec must be a JSON object")]
    problems = _schema_problems(data)
    problems.extend(_Checker(data).check())
    # One problem per (pointer, message): the schema and the checks may both see a mistake.
    unique: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        unique.setdefault((problem.pointer, problem.message), problem)
    return list(unique.values())
