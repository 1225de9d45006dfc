"""Phone numbers: everything we store is E.164, parsed with `phonenumbers`.

National formats are read in the organization's default region.
"""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def phone_to_e164(value: str, *, region: str = "US", field: str = "number") -> str:
    """Return `value` in E.164 (``+14155550100``).

    Raises ValidationError naming `field` when the number cannot be parsed or is not a
    complete number: a local-only number (``555-0100``, no area code) is refused, never
    stored as if it were E.164. (Only the length is checked, not the number ranges a country
    has allocated: those change faster than the metadata.)
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
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        why = _IMPOSSIBLE_REASONS.get(reason, "it is not a possible phone number")
        raise ValidationError(
            {
                field: f"'{raw}' is not a complete phone number ({why}). Enter it with its "
                "area code, or in international format such as +14155550100 (national numbers "
                f"are read in region {(region or 'US').upper()})."
            }
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# Why `is_possible_number_with_reason` refuses a number, for people.
_IMPOSSIBLE_REASONS = {
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "missing area code",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too few digits",
    phonenumbers.ValidationResult.TOO_LONG: "too many digits",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong number of digits",
}


def phone_display(e164: str) -> str:
    """Format an E.164 number for people (international format)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def region_is_valid(region: str) -> bool:
    return (region or "").upper() in phonenumbers.SUPPORTED_REGIONS
