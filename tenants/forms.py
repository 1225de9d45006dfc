"""Forms of the tenant web UI. They validate the shape of the input only; the rules live in
`tenants.services` (which calls `full_clean()`), and a service's ValidationError is put back
on the form's fields with `add_service_errors`."""

from __future__ import annotations

from functools import cache
from typing import Any

import phonenumbers
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from phonenumbers import geocoder

from tenants.models import Account, PbxUser, normalize_pbx_domain, validate_pbx_domain

CSV_MAX_BYTES = 1_000_000


@cache
def region_choices() -> list[tuple[str, str]]:
    """Every region `phonenumbers` knows, as (code, "Name (code)"), sorted by name."""
    choices = []
    for code in phonenumbers.SUPPORTED_REGIONS:
        name = geocoder._region_display_name(code, "en") or code
        choices.append((code, f"{name} ({code})"))
    return sorted(choices, key=lambda choice: choice[1])


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Attach a service's ValidationError to `form`: messages about a field the form has go
    under that field, the others above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


class OrganizationForm(forms.Form):
    """Create or edit an organization. The account choice appears only when creating and the
    reseller manages several accounts."""

    name = forms.CharField(max_length=200)
    pbx_domain = forms.CharField(
        label="PBX domain",
        max_length=253,
        required=False,
        help_text="The organization's PBX host, for example customer.ringrx.com.",
    )
    default_region = forms.ChoiceField(
        label="Default region",
        choices=region_choices,
        initial="US",
        help_text="Phone numbers written in national format are read in this region.",
    )
    account = forms.ModelChoiceField(
        queryset=Account.objects.none(),
        empty_label=None,
        help_text="The reseller account the organization belongs to.",
    )

    def __init__(
        self, *args: Any, accounts: QuerySet[Account] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if accounts is not None and accounts.count() > 1:
            self.fields["account"].queryset = accounts
        else:
            del self.fields["account"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError("Enter a name.")
        return name

    def clean_pbx_domain(self) -> str:
        """The model's check (`Organization.clean` runs it for the API too), reported here
        with the form's other field errors."""
        domain = normalize_pbx_domain(self.cleaned_data["pbx_domain"])
        validate_pbx_domain(domain)
        return domain


class PbxUserForm(forms.Form):
    extension = forms.CharField(max_length=20, help_text="Digits only, e.g. 101.")
    name = forms.CharField(max_length=200)
    email = forms.EmailField(required=False)
    mobile = forms.CharField(
        max_length=32,
        required=False,
        help_text="Any format; national numbers are read in the organization's region.",
    )


class PbxUsersCsvUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="Columns: extension,name,email,mobile (a header row is required).",
    )

    def clean_file(self) -> str:
        """Return the file's text (UTF-8, with or without a byte order mark)."""
        upload = self.cleaned_data["file"]
        if upload.size > CSV_MAX_BYTES:
            raise ValidationError(f"The file is larger than {CSV_MAX_BYTES // 1000} kB.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError("The file is not UTF-8 text; save it as CSV UTF-8.") from exc


class PbxUsersCsvConfirmForm(forms.Form):
    """The second step of an import with bad rows: the same CSV text, re-posted."""

    csv_text = forms.CharField(widget=forms.HiddenInput, strip=False, max_length=CSV_MAX_BYTES)
    import_valid_rows = forms.BooleanField(widget=forms.HiddenInput, required=True)


class _PbxUserChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: PbxUser) -> str:
        return f"{obj.extension} — {obj.name}"


def _users_field(queryset: QuerySet[PbxUser]) -> _PbxUserChoiceField:
    return _PbxUserChoiceField(
        queryset=queryset,
        required=False,
        label="Assigned users",
        widget=forms.CheckboxSelectMultiple,
        help_text="PBX users of this organization who send and receive on this number.",
    )


class SmsNumberForm(forms.Form):
    """Add (with `users`) or edit (without) an SMS number."""

    number = forms.CharField(
        max_length=32,
        help_text="Any format, e.g. (415) 555-0123 or +44 20 7946 0018; stored as E.164.",
    )
    label = forms.CharField(max_length=100, required=False, help_text="For example Front desk.")

    def __init__(self, *args: Any, users: QuerySet[PbxUser] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if users is not None:
            self.fields["users"] = _users_field(users)


class SmsNumberAssignForm(forms.Form):
    def __init__(self, *args: Any, users: QuerySet[PbxUser], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["users"] = _users_field(users)
