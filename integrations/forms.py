"""The one property form, generated from a spec's `properties`."""

from __future__ import annotations

from typing import Any

from django import forms

from integrations.engine.spec import PropertyDef, Spec

# Shown in place of a stored secret: the value itself is never rendered back.
SECRET_PLACEHOLDER = "•••••••• (stored — leave blank to keep)"


def _field_for(prop: PropertyDef, *, has_stored_secret: bool) -> forms.Field:
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
        return forms.FloatField(initial=prop.default, **common)
    if prop.type == "boolean":
        common["required"] = False
        return forms.BooleanField(initial=bool(prop.default), **common)
    if prop.type == "choice":
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
                prop, has_stored_secret=prop.name in self.stored_secrets
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
