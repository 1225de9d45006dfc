"""RingRx's callback bodies (seeds/ringrx-api-and-callbacks.txt), as plain data.

One source for the two places that need a realistic RingRx callback: the sandbox that imitates
RingRx posting to us, and the portal's "send a test" of an outbound callback subscription.
Pure Python: no Django, so the sandbox can use it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

DOMAIN = "customer.ringrx.com"
CALLBACK_TYPES = ("sms", "voicemail", "fax", "cdr", "recording", "outreach", "call_alert")


def ringrx_callback_sample(callback_type: str, *, now: datetime | None = None) -> dict[str, Any]:
    """A sample callback body of `callback_type` in the seed's format, with fresh ids.

    For ``voicemail`` and ``fax`` (whose body is the file) these are the token values RingRx
    puts in the URL. Raises ValueError for an unknown callback type.
    """
    now = now or datetime.now(UTC)
    cdr = {
        "id": 5512345,
        "domain_name": DOMAIN,
        "aleg_uuid": str(uuid.uuid4()),
        "responsible_party": "1001",
        "start_time": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "hangup_cause": "NORMAL_CLEARING",
        "dialed_digits": "8185559876",
        "calling_party": "+14155550100",
        "caller_id_number": "+14155550100",
        "caller_id_name": "Jane Doe",
        "duration": 95,
        "bill_duration": 87,
        "direction": "inbound",
        "mailbox": None,
        "aleg_holdtime": 0,
        "bleg_holdtime": 0,
        "tags": "inbound,reception_queue",
    }
    samples: dict[str, dict[str, Any]] = {
        "sms": {
            "from": "8185551234",
            "to": "8185559876",
            "message": "Test callback",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "uuid": str(uuid.uuid4()),
        },
        "cdr": cdr,
        # The seed: "JSON object of Call detail record with new recording"; the field
        # carrying the recording is not named, ``recording_url`` is our guess.
        "recording": {**cdr, "recording_url": "http://127.0.0.1/recordings/sample.wav"},
        "call_alert": {
            "uuid": str(uuid.uuid4()),
            "created_at": str(int(now.timestamp() * 1_000_000)),
            "callback_id": 99,
            "domain_name": DOMAIN,
            "originally_dialed_number": "+18885439876",
            "dialed_number": "8000",
            "caller_number": "+18185551234",
            # Sic: the seed's sample body spells it "caller_nname" (its token list says
            # {caller_name}); we keep the sample's spelling.
            "caller_nname": "Dr Smith",
            "tags": "inbound,reception_queue",
            "dialed_user_emails": "ssmith@gmail.us,jjones@hotmail.us",
            "dialed_users": "ssmith,jjones",
        },
        "outreach": {
            "id": 7001,
            "name": "Annual checkup",
            "phonenumber": "+18185551234",
            "email_address": "patient@example.com",
            "call_state": "completed",
            "sms_state": "delivered",
            "email_state": "sent",
            "confirmed": True,
            "cancelled": False,
            "reminder_date": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "attempt": 1,
            "voice": True,
            "sms": True,
            "email": False,
            "event_log": [],
        },
        "voicemail": {
            "id": 9001,
            "caller": "+18185551234",
            "called": "+18185559876",
            "duration": 21,
            "filename": "voicemail-9001.wav",
            "mailbox": "1001",
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        },
        "fax": {
            "id": 9101,
            "caller": "+18185551234",
            "called": "+18185559877",
            "pages": 2,
            "filename": "fax-9101.pdf",
            "mailbox": "1002",
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        },
    }
    if callback_type not in samples:
        raise ValueError(f"unknown RingRx callback type {callback_type!r}; one of {CALLBACK_TYPES}")
    return samples[callback_type]


def ringrx_tokens(callback_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """The `{token}` values of a RingRx callback body, as RingRx's token tables name them."""
    tokens = dict(body)
    if callback_type == "call_alert" and tokens.get("caller_name") is None:
        # The documented sample body spells it "caller_nname"; its token is {caller_name}.
        tokens["caller_name"] = tokens.get("caller_nname")
    return tokens
