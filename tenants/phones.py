"""Phone numbers: everything we store is E.164, parsed with `phonenumbers`.

National formats are read in the organization's default region.
"""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def phone_to_e164(value: str, *, region: str = "US", field: str = "number") -> str:
    """Return `value` in E.164 (``+14155550100``).

    Raises ValidationError naming `field` when the number cannot be parsed or is not a
    possible number in any region.
    """
    raw = (value or "").strip()
    if not raw:
        raise ValidationError({field: "Enter a phone number."})
    try:
        parsed = phonenumbers.parse(raw, (region or "US").upper())
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            {field: f"'{raw}' is not a phone number ({exc._msg.rstrip('.')})."}
        ) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationError(
            {field: f"'{raw}' is not a possible phone number in region {region.upper()}."}
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_display(e164: str) -> str:
    """Format an E.164 number for people (international format)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def region_is_valid(region: str) -> bool:
    return (region or "").upper() in phonenumbers.SUPPORTED_REGIONS
