"""The one property form, generated from a spec's `properties`."""

from __future__ import annotations

from typing import Any

from django import forms

from integrations.engine.spec import PropertyDef, Spec

# Shown in place of a stored secret: the value itself is never rendered back.
SECRET_PLACEHOLDER = "•••••••• (stored — leave blank to keep)"


class WholeOrFloatField(forms.FloatField):
    """A number field whose whole numbers come out as `int` (20, not 20.0), so a value used
    in a URL or body reads as the admin typed it."""

    def to_python(self, value: Any) -> int | float | None:
        number = super().to_python(value)
        if isinstance(number, float) and number.is_integer():
            return int(number)
        return number


def property_choices(spec: Spec, index: int, prop: PropertyDef) -> list[tuple[str, str]]:
    """(value, label) of each choice. The engine keeps only the values; a choice written as
    `{"value": "in", "label": "India"}` keeps its label from the spec document."""
    raw_items = spec.raw.get("properties")
    raw_item = raw_items[index] if isinstance(raw_items, list) and index < len(raw_items) else {}
    raw_choices = raw_item.get("choices") if isinstance(raw_item, dict) else None
    if isinstance(raw_choices, list) and len(raw_choices) == len(prop.choices):
        pairs = []
        for value, raw in zip(prop.choices, raw_choices, strict=True):
            label = raw.get("label") if isinstance(raw, dict) else None
            pairs.append((str(value), str(label) if label not in (None, "") else str(value)))
        return pairs
    return [(str(c), str(c)) for c in prop.choices]


def _field_for(
    prop: PropertyDef, *, has_stored_secret: bool, choices: list[tuple[str, str]] | None = None
) -> forms.Field:
    label = prop.label or prop.name
    common: dict[str, Any] = {"label": label, "help_text": prop.help, "required": prop.required}
    if prop.secret or prop.type == "secret":
        widget = forms.PasswordInput(
            render_value=False,
            attrs={
                "placeholder": SECRET_PLACEHOLDER if has_stored_secret else "",
                "autocomplete": "new-password",
            },
        )
        # A stored secret is kept when the field is left blank on edit.
        common["required"] = prop.required and not has_stored_secret
        return forms.CharField(widget=widget, strip=True, **common)
    if prop.type == "url":
        return forms.URLField(initial=prop.default, assume_scheme="https", **common)
    if prop.type == "number":
        return WholeOrFloatField(initial=prop.default, **common)
    if prop.type == "boolean":
        common["required"] = False
        return forms.BooleanField(initial=bool(prop.default), **common)
    if prop.type == "choice":
        if choices is None:
            choices = [(str(c), str(c)) for c in prop.choices]
        if not prop.required:
            choices = [("", "—"), *choices]
        return forms.ChoiceField(choices=choices, initial=prop.default, **common)
    return forms.CharField(initial=prop.default, strip=True, **common)


class PropertyForm(forms.Form):
    """Fields for every property of `spec`, typed, with required/default/help/choices.

    `initial_values` are the stored non-secret values; `stored_secrets` names the secret
    properties that already have a value (their fields render empty).
    """

    def __init__(
        self,
        *args: Any,
        spec: Spec,
        initial_values: dict[str, Any] | None = None,
        stored_secrets: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.stored_secrets = stored_secrets or set()
        self.field_names: dict[str, str] = {}
        for index, prop in enumerate(spec.properties):
            field_name = f"prop_{index}"
            self.field_names[field_name] = prop.name
            self.fields[field_name] = _field_for(
                prop,
                has_stored_secret=prop.name in self.stored_secrets,
                choices=property_choices(spec, index, prop) if prop.type == "choice" else None,
            )
            if initial_values and prop.name in initial_values and not self.is_secret(prop):
                self.initial[field_name] = initial_values[prop.name]

    @staticmethod
    def is_secret(prop: PropertyDef) -> bool:
        return prop.secret or prop.type == "secret"

    def property_values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(plain values, secret values) by property name. A blank secret is left out so the
        stored one is kept."""
        plain: dict[str, Any] = {}
        secret: dict[str, str] = {}
        for field_name, prop_name in self.field_names.items():
            prop = self.spec.property(prop_name)
            value = self.cleaned_data.get(field_name)
            if prop is not None and self.is_secret(prop):
                if value:
                    secret[prop_name] = value
            elif value is not None and value != "":
                plain[prop_name] = value
            elif prop is not None and prop.type == "boolean":
                plain[prop_name] = bool(value)
        return plain, secret


# --- Forms of the integrations pages besides the generated one -------------------------------


class InstallationSettingsForm(forms.Form):
    """What every installation has besides its spec's properties: a label and, for CRMs,
    whether to create unknown callers and which contact an activity goes to."""

    label = forms.CharField(
        max_length=200,
        required=False,
        help_text="A name to tell several installations of one integration apart.",
    )
    create_contacts = forms.BooleanField(
        required=False,
        label="Create contacts for unknown callers",
        help_text="When a caller matches no CRM contact, create one.",
    )
    match_policy = forms.ChoiceField(
        label="When several contacts match",
        choices=[],
        help_text="Which contact a call activity is logged to.",
    )

    def __init__(self, *args: Any, spec_class: str = "crm", **kwargs: Any) -> None:
        from integrations.models import Installation

        super().__init__(*args, **kwargs)
        self.fields["match_policy"].choices = Installation.MatchPolicy.choices
        self.fields["match_policy"].initial = Installation.MatchPolicy.RECENT
        if spec_class != "crm":
            del self.fields["create_contacts"]
            del self.fields["match_policy"]


class SpecUploadForm(forms.Form):
    """A custom spec as a file or pasted JSON, for one of the user's accounts."""

    MAX_BYTES = 1_000_000

    account = forms.ModelChoiceField(queryset=None, empty_label=None)
    file = forms.FileField(required=False, label="Spec file (.json)")
    text = forms.CharField(
        required=False,
        label="…or paste the JSON",
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"}),
    )

    def __init__(self, *args: Any, accounts: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = accounts
        self.only_account = accounts.first() if accounts.count() == 1 else None
        if self.only_account is not None:
            # One account: nothing to choose.
            del self.fields["account"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.only_account is not None:
            data["account"] = self.only_account
        upload = data.get("file")
        text = (data.get("text") or "").strip()
        if upload and text:
            raise forms.ValidationError("Give a file or pasted JSON, not both.")
        if upload:
            if upload.size > self.MAX_BYTES:
                raise forms.ValidationError("The file is larger than 1 MB.")
            raw = upload.read()
            try:
                data["source"] = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        elif text:
            if len(text.encode()) > self.MAX_BYTES:
                raise forms.ValidationError("The JSON is larger than 1 MB.")
            data["source"] = text
        else:
            raise forms.ValidationError("Choose a spec file or paste its JSON.")
        return data


class ConnectionTestForm(forms.Form):
    """Which harmless method to run, and the number to look up for FindContact."""

    method_name = forms.ChoiceField(label="Method")
    phone = forms.CharField(
        required=False,
        max_length=40,
        label="Phone number",
        help_text="For FindContact: a number as people type it; the organization's region "
        "decides national formats.",
    )

    def __init__(self, *args: Any, methods: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["method_name"].choices = [(m, m) for m in methods]
        if "FindContact" not in methods:
            del self.fields["phone"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("method_name") == "FindContact" and not (data.get("phone") or "").strip():
            self.add_error("phone", "Type the phone number to look up.")
        return data


class SpecReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
