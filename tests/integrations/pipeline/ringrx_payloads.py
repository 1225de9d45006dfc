"""RingRx callback bodies for the tests.

`SEED_SMS` and `SEED_CALL_ALERT` are copied byte for byte from the sample bodies of
shared/seeds/ringrx-api-and-callbacks.txt (spacing, order and the sample's "caller_nname"
spelling included). The document gives no sample body for cdr, recording and outreach, only
their token tables: those bodies are the sandbox's (`integrations.sandbox.ringrx.callback_payload`),
built field by field from the tables. Voicemail and fax bodies are files, their metadata (the
tokens) in the query string.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from integrations.sandbox.ringrx import callback_payload

SEED_SMS = b"""{
  "from" : "8185551234",
  "to" : "8185559876",
  "message" : "Test callback",
  "timestamp" : "2019-02-15T23:48:54+00:00",
  "uuid" : "6ed8654e-a9d1-4a7c-9502-581210d0985f"
}"""

SEED_CALL_ALERT = b"""{
  "uuid" : "5bab4386-14a6-46ea-b200-6e47a91837cb",
  "created_at" : "1709075290020813",
  "callback_id" : 99,
  "domain_name" : "customer.ringrx.com",
  "originally_dialed_number" : "+18885439876",
  "dialed_number" : "8000",
  "caller_number" : "+18185551234",
  "caller_nname" : "Dr Smith",
  "tags" : "inbound,reception_queue",
  "dialed_user_emails" : "ssmith@gmail.us,jjones@hotmail.us",
  "dialed_users" : "ssmith,jjones"
}"""

# One fixed moment for every generated body, so that two calls give the same body.
SAMPLE_TIME = datetime(2026, 2, 27, 23, 8, 10, tzinfo=UTC)

JSON_TYPES = ("sms", "cdr", "recording", "call_alert", "outreach")
FILE_TYPES = ("voicemail", "fax")


def json_body(callback_type: str) -> bytes:
    """The raw body RingRx posts for a JSON callback type."""
    if callback_type == "sms":
        return SEED_SMS
    if callback_type == "call_alert":
        return SEED_CALL_ALERT
    return json.dumps(callback_payload(callback_type, now=SAMPLE_TIME), indent=2).encode()


def file_metadata(callback_type: str) -> dict[str, Any]:
    """The token values of a voicemail or fax callback (sent in the query string)."""
    return callback_payload(callback_type, now=SAMPLE_TIME)


def file_body(callback_type: str, size: int = 300_000) -> bytes:
    """A binary file body: a WAV or PDF header followed by random bytes."""
    head = b"RIFF\x24\x00\x00\x00WAVEfmt " if callback_type == "voicemail" else b"%PDF-1.4\n"
    return head + os.urandom(size)
