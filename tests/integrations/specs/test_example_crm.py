"""example-crm against the generic CRM sandbox: every method, OAuth, retries and the SSRF guard."""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests

from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import SpecClient, request_summary
from integrations.engine.errors import IntegrationError
from integrations.engine.http import HttpSession
from integrations.sandbox.generic_crm import GenericCrmSandbox
from tests.integrations.specs.conftest import SleepRecorder, builtin_spec
from tests.integrations.specs.contract import (
    CrmContract,
    CrmSetup,
    DoorCall,
    DoorSetup,
    HttpDoorContract,
    RecordedExchanges,
)

SPEC_ID = "example-crm"
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
UNKNOWN_PHONE = "+14155550999"
CALL = {
    "call_id": "call-0001",
    "call_direction": "inbound",
    "call_start": "2024-05-01T10:00:00Z",
    "call_end": "2024-05-01T10:01:05Z",
    "call_duration": 65,
    "contact_id": "c-1",
    "user_id": "u-1001",
    "phone": "+14155550100",
    "note": "Asked about the renewal",
}


def connected_store(server: GenericCrmSandbox) -> InMemoryTokenStore:
    """Tokens as the code exchange would have saved them (without the browser flow)."""
    body = server.issue_tokens()
    return InMemoryTokenStore(
        TokenSet(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            expires_at=time.time() + body["expires_in"],
            extra={"instance_url": body["instance_url"]},
        )
    )


def crm_client(
    server: GenericCrmSandbox,
    *,
    store: InMemoryTokenStore | None = None,
    session: HttpSession | None = None,
    allow_private_networks: bool = True,
    **properties: Any,
) -> SpecClient:
    values = {
        "Instance URL": server.url,
        "Client ID": server.client_id,
        "Client Secret": server.client_secret,
    }
    values.update({name.replace("_", " "): value for name, value in properties.items()})
    return SpecClient(
        builtin_spec(SPEC_ID),
        properties=values,
        token_store=store if store is not None else connected_store(server),
        session=session,
        allow_private_networks=allow_private_networks,
    )


def bearer_of(store: InMemoryTokenStore) -> str:
    tokens = store.load()
    assert tokens is not None
    return f"Bearer {tokens.access_token}"


class TestExampleCrmContract(CrmContract):
    spec_id = SPEC_ID

    @pytest.fixture
    def crm(self, crm_server: GenericCrmSandbox) -> CrmSetup:
        return CrmSetup(
            client=crm_client(crm_server),
            server=crm_server,
            known_phone="+14155550100",
            known_name="Jane Doe",
            unknown_phone=UNKNOWN_PHONE,
            activity_params=CALL,
        )


class TestExampleCrmHttpDoor(HttpDoorContract):
    spec_id = SPEC_ID

    @pytest.fixture
    def door(self, crm_server: GenericCrmSandbox) -> DoorSetup:
        def connect(session: HttpSession, base_url: str | None = None) -> SpecClient:
            if base_url is None:
                return crm_client(crm_server, session=session)
            store = InMemoryTokenStore(TokenSet("access", "refresh", time.time() + 3600))
            return crm_client(crm_server, store=store, session=session, Instance_URL=base_url)

        return DoorSetup(
            server=crm_server,
            connect=connect,
            lookup=DoorCall(
                "FindContact", {"phone": "+14155550100"}, "/contacts/search", "contact_id"
            ),
            write=DoorCall("CreateActivity", CALL, "/activities", "activity_id"),
        )


class TestExampleCrmRecorded(RecordedExchanges):
    spec_id = SPEC_ID
    replay_values = {"Instance URL": "https://crm.example"}


# -- OAuth -------------------------------------------------------------------------------


def test_oauth_connect_flow_saves_tokens_and_the_instance_url(
    crm_server: GenericCrmSandbox,
) -> None:
    crm_server.configure(auto_approve=True)
    store = InMemoryTokenStore()
    client = crm_client(crm_server, store=store)

    url = client.authorization_url(state="state-1", redirect_uri=REDIRECT_URI)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert url.startswith(crm_server.url + "/oauth/authorize?")
    assert query["client_id"] == crm_server.client_id
    assert query["scope"] == "contacts activities"
    assert query["state"] == "state-1"
    consent = requests.get(url, allow_redirects=False, timeout=5)
    location = urllib.parse.urlsplit(consent.headers["Location"])
    code = dict(urllib.parse.parse_qsl(location.query))["code"]
    tokens = client.exchange_code(code=code, redirect_uri=REDIRECT_URI)

    assert tokens.extra == {"instance_url": crm_server.url}
    assert client.call("GetUserInfo").to_json() == {
        "user_id": "u-1001",
        "user_name": "Alice Agent",
        "user_email": "alice@crm.example",
    }
    token_request = crm_server.last("/oauth/token")
    assert token_request is not None
    assert token_request.form["grant_type"] == ["authorization_code"]
    assert token_request.form["redirect_uri"] == [REDIRECT_URI]
    me = crm_server.last("/me")
    assert me is not None and me.header("Authorization") == f"Bearer {tokens.access_token}"


def test_api_calls_go_to_the_instance_url_issued_with_the_token(
    crm_server: GenericCrmSandbox,
) -> None:
    # The configured URL is only where OAuth happens; the token response says where the API is.
    client = crm_client(crm_server, Instance_URL="https://login.crm.invalid")

    assert client.call("GetUserInfo").first()["user_id"] == "u-1001"
    assert client.dry_run("Users")[0].url == crm_server.url + "/users"


def test_an_expired_token_is_refreshed_once_and_the_call_succeeds(
    crm_server: GenericCrmSandbox,
) -> None:
    store = connected_store(crm_server)
    old = bearer_of(store)
    client = crm_client(crm_server, store=store)
    crm_server.advance_clock(3700)

    result = client.call("Users")

    assert len(result.records) == 3
    assert len(crm_server.requests_to("/oauth/token")) == 1
    refresh = crm_server.last("/oauth/token")
    assert refresh is not None and refresh.form["grant_type"] == ["refresh_token"]
    sent = [r.header("Authorization") for r in crm_server.requests_to("/users")]
    assert sent == [old, bearer_of(store)]
    assert [r.status for r in crm_server.requests_to("/users")] == [401, 200]
    assert store.saves == 1


def test_a_refused_refresh_is_auth_failed(crm_server: GenericCrmSandbox) -> None:
    store = connected_store(crm_server)
    tokens = store.load()
    assert tokens is not None and tokens.refresh_token
    crm_server.oauth.revoke(tokens.refresh_token)
    client = crm_client(crm_server, store=store)

    with pytest.raises(IntegrationError) as caught:
        client.call("Users")

    assert caught.value.auth_failed is True
    assert caught.value.status == 401
    assert "reconnect" in caught.value.message
    assert tokens.refresh_token not in caught.value.message
    assert len(crm_server.requests_to("/oauth/token")) == 1


def test_logout_revokes_the_refresh_token(crm_server: GenericCrmSandbox) -> None:
    store = connected_store(crm_server)
    tokens = store.load()
    assert tokens is not None
    client = crm_client(crm_server, store=store)

    result = client.call("Logout")

    revoke = crm_server.last("/oauth/revoke")
    assert revoke is not None and revoke.form["token"] == [tokens.refresh_token]
    assert tokens.refresh_token not in str(request_summary(result.requests[0]))
    crm_server.advance_clock(3700)
    with pytest.raises(IntegrationError) as caught:
        client.call("Users")
    assert caught.value.auth_failed is True


# -- users, contacts, accounts -----------------------------------------------------------


def test_users_sends_the_token_and_keeps_active_users(crm_server: GenericCrmSandbox) -> None:
    store = connected_store(crm_server)
    client = crm_client(crm_server, store=store)

    records = client.call("Users").records

    assert [r["user_id"] for r in records] == ["u-1001", "u-1002", "u-1003"]
    assert records[0] == {
        "user_id": "u-1001",
        "user_name": "Alice Agent",
        "user_email": "alice@crm.example",
        "user_extension": "1001",
        "user_active": True,
    }
    sent = crm_server.last("/users")
    assert sent is not None
    assert sent.header("Authorization") == bearer_of(store)
    assert sent.header("Accept") == "application/json"


@pytest.mark.parametrize(
    ("phone", "contact_id", "format_used"),
    [
        ("+14155550100", "c-1", "+14155550100"),  # stored E.164
        ("+14155550123", "c-2", "(415) 555-0123"),  # stored national
        ("+14155550144", "c-3", "4155550144"),  # stored national digits
        ("+442079460958", "c-5", "+44 20 7946 0958"),  # stored international
        ("+14155550155", "c-4", "14155550155"),  # stored digits
    ],
)
def test_find_contact_tries_each_phone_format_until_one_matches(
    crm_server: GenericCrmSandbox, phone: str, contact_id: str, format_used: str
) -> None:
    result = crm_client(crm_server).call("FindContact", {"phone": phone})

    assert [r["contact_id"] for r in result.records] == [contact_id]
    assert result.phone_used == format_used
    assert crm_server.last("/contacts/search") is not None
    assert crm_server.last("/contacts/search").query["phone"] == [format_used]  # type: ignore[union-attr]


def test_find_contact_finds_john_smith_only_through_the_national_format(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(crm_server).call("FindContact", {"phone": "+14155550123"})

    assert result.first()["contact_name"] == "John Smith"
    assert result.first()["contact_phone"] == "+14155550123"  # mapped back to E.164
    tried = [r.query["phone"][0] for r in crm_server.requests_to("/contacts/search")]
    # E.164, then the dashed fallback step, then the national format that matches.
    assert tried == ["+14155550123", "415-555-0123", "(415) 555-0123"]


def test_find_contact_falls_back_to_a_dashed_number(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(crm_server).call("FindContact", {"phone": "+14155550189"})

    assert result.first()["contact_id"] == "c-8"
    assert result.first()["contact_mobile"] == "+14155550189"
    assert len(result.requests) == 2


def test_find_contact_returns_every_match(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(crm_server).call("FindContact", {"phone": "+14155550177"})

    assert {r["contact_name"] for r in result.records} == {"Sam Twin", "Sally Twin"}


def test_find_contact_on_an_unknown_number_tries_every_format_once(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(crm_server).call("FindContact", {"phone": UNKNOWN_PHONE})

    assert result.to_json() == []
    tried = [r.query["phone"][0] for r in crm_server.requests_to("/contacts/search")]
    formats = ["+14155550999", "(415) 555-0999", "4155550999", "+1 415-555-0999", "14155550999"]
    assert tried[0::2] == formats
    assert set(tried[1::2]) == {"415-555-0999"}


def test_search_contacts_by_name(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(crm_server).call("SearchContacts", {"query": "twin"})

    assert {r["contact_id"] for r in result.records} == {"c-6", "c-7"}
    assert crm_server.last("/contacts/search").query == {"q": ["twin"]}  # type: ignore[union-attr]


def test_contacts_compute_the_name_from_first_and_last(crm_server: GenericCrmSandbox) -> None:
    records = crm_client(crm_server).call("Contacts").records

    assert len(records) == 8
    john = next(r for r in records if r["contact_id"] == "c-2")
    assert john["contact_name"] == "John Smith"
    assert john["contact_phone"] == "+14155550123"
    assert john["contact_updated"] == "2024-02-11T09:00:00Z"
    assert crm_server.last("/contacts").query == {"limit": ["200"]}  # type: ignore[union-attr]


def test_accounts(crm_server: GenericCrmSandbox) -> None:
    records = crm_client(crm_server).call("Accounts").records

    assert [r["account_name"] for r in records] == ["Acme Corp", "Globex", "Initech"]
    assert records[1]["account_phone"] == "+12125550199"


def test_create_contact_links_an_existing_account(crm_server: GenericCrmSandbox) -> None:
    created = (
        crm_client(crm_server)
        .call(
            "CreateContact",
            {
                "contact_first_name": "Zed",
                "contact_last_name": "Newman",
                "contact_company": "acme corp",
                "contact_phone": "+14155550111",
                "user_id": "u-1002",
            },
        )
        .to_json()
    )

    assert created == {"account_id": "a-1", "contact_id": "c-1001", "contact_name": "Zed Newman"}
    assert crm_server.last("/accounts/search").query == {"name": ["acme corp"]}  # type: ignore[union-attr]
    assert crm_server.requests_to("/accounts", "POST") == []
    body = crm_server.last("/contacts", "POST").json  # type: ignore[union-attr]
    assert body == {
        "first_name": "Zed",
        "last_name": "Newman",
        "phone": "+14155550111",
        "company": "acme corp",
        "account_id": "a-1",
        "owner_id": "u-1002",
    }
    assert crm_server.contacts["c-1001"]["account_id"] == "a-1"


def test_create_contact_creates_a_missing_account_first(crm_server: GenericCrmSandbox) -> None:
    created = (
        crm_client(crm_server)
        .call("CreateContact", {"contact_name": "Quinn", "contact_company": "Newco"})
        .to_json()
    )

    assert isinstance(created, dict)
    account_id = created["account_id"]
    assert crm_server.accounts[account_id]["name"] == "Newco"
    assert crm_server.contacts[created["contact_id"]]["account_id"] == account_id
    assert crm_server.contacts[created["contact_id"]]["last_name"] == "Quinn"


def test_create_contact_without_a_company_skips_the_account_steps(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(crm_server).call("CreateContact", {"contact_phone": "+14155550112"})

    assert len(result.requests) == 1
    assert crm_server.requests_to("/accounts*") == []
    contact = crm_server.contacts[result.first()["contact_id"]]
    assert contact["last_name"] == "Unknown caller"
    assert contact["account_id"] is None


def test_update_contact_sends_only_the_given_fields(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(crm_server).call(
        "UpdateContact", {"contact_id": "c-2", "contact_email": "john@smith.example"}
    )

    assert result.first()["contact_id"] == "c-2"
    sent = crm_server.last("/contacts/c-2", "PATCH")
    assert sent is not None and sent.json == {"email": "john@smith.example"}
    assert crm_server.contacts["c-2"]["email"] == "john@smith.example"
    assert crm_server.contacts["c-2"]["phone"] == "(415) 555-0123"


def test_delete_contact(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(crm_server).call("DeleteContact", {"contact_id": "c-4"})

    assert result.to_json() == {}
    assert "c-4" not in crm_server.contacts
    assert crm_server.last("/contacts/c-4").status == 204  # type: ignore[union-attr]


# -- activities --------------------------------------------------------------------------


def test_create_activity_sends_the_call_and_captures_body_and_header(
    crm_server: GenericCrmSandbox,
) -> None:
    created = crm_client(crm_server).call("CreateActivity", CALL).to_json()

    assert isinstance(created, dict)
    assert created["activity_id"] == "act-1001"
    assert created["activity_version"] == 1
    assert created["request_id"].startswith("req_")
    (activity,) = crm_server.activities_for_call("call-0001")
    assert activity["subject"] == "Inbound call 2024-05-01 10:00 UTC"
    assert activity["duration"] == 65
    assert activity["duration_ms"] == 65000
    assert activity["start"] == "2024-05-01T10:00:00Z"
    assert activity["contact_id"] == "c-1"
    assert "status" not in crm_server.last("/activities", "POST").json  # type: ignore[union-attr]


def test_an_outbound_call_is_titled_outbound(crm_server: GenericCrmSandbox) -> None:
    params = {**CALL, "call_direction": "outbound", "call_start": "2024-05-01T23:30:00-02:00"}
    crm_client(crm_server).call("CreateActivity", params)

    (activity,) = crm_server.activities_for_call("call-0001")
    assert activity["subject"] == "Outbound call 2024-05-02 01:30 UTC"


def test_activity_get_update_and_status(crm_server: GenericCrmSandbox) -> None:
    client = crm_client(crm_server)
    activity_id = client.call("CreateActivity", CALL).first()["activity_id"]

    fetched = client.call("GetActivity", {"activity_id": activity_id}).first()
    updated = client.call(
        "UpdateActivity",
        {
            "activity_id": activity_id,
            "activity_version": fetched["activity_version"],
            "note": "Renewal agreed",
            "call_duration": 90,
        },
    ).first()
    status = client.call(
        "ChangeActivityStatus",
        {"activity_id": activity_id, "activity_status": "completed", "disposition": "won"},
    ).first()

    assert fetched["activity_type"] == "call"
    assert fetched["subject"] == "Inbound call 2024-05-01 10:00 UTC"
    assert updated["activity_version"] == 2
    assert status == {
        "activity_id": activity_id,
        "activity_status": "completed",
        "activity_version": 3,
    }
    stored = crm_server.activities[activity_id]
    assert stored["notes"] == "Renewal agreed"
    assert stored["duration"] == 90
    assert stored["disposition"] == "won"
    sent = crm_server.last(f"/activities/{activity_id}", "PUT")
    assert sent is not None and sent.json["version"] == 1


def test_an_update_with_a_stale_version_is_a_permanent_conflict(
    crm_server: GenericCrmSandbox,
) -> None:
    client = crm_client(crm_server)
    activity_id = client.call("CreateActivity", CALL).first()["activity_id"]
    client.call("UpdateActivity", {"activity_id": activity_id, "note": "edited in the CRM"})

    with pytest.raises(IntegrationError) as caught:
        client.call(
            "UpdateActivity", {"activity_id": activity_id, "activity_version": 1, "note": "ours"}
        )

    assert caught.value.status == 409
    assert caught.value.permanent is True
    assert crm_server.activities[activity_id]["notes"] == "edited in the CRM"


def test_upload_recording_sends_the_file_as_multipart(
    crm_server: GenericCrmSandbox, tmp_path: Path
) -> None:
    audio = b"ID3\x04\x00" + bytes(range(256)) * 40
    recording = tmp_path / "recording.mp3"
    recording.write_bytes(audio)
    client = crm_client(crm_server)
    activity_id = client.call("CreateActivity", CALL).first()["activity_id"]

    uploaded = client.call(
        "UploadRecording",
        {
            "activity_id": activity_id,
            "call_id": "call-0001",
            "recording_file": str(recording),
            "call_duration": 65,
        },
    ).first()

    (stored,) = crm_server.activities[activity_id]["recordings"]
    assert uploaded == {"recording_id": stored["id"], "recording_size": len(audio)}
    assert stored["filename"] == "call-call-0001.mp3"
    assert stored["content_type"] == "audio/mpeg"
    assert stored["sha256"] == hashlib.sha256(audio).hexdigest()
    assert stored["fields"] == {"call_id": "call-0001", "duration": "65"}
    sent = crm_server.last(f"/activities/{activity_id}/recording")
    assert sent is not None
    assert (sent.header("Content-Type") or "").startswith("multipart/form-data; boundary=")


def test_create_message_log(crm_server: GenericCrmSandbox) -> None:
    created = (
        crm_client(crm_server)
        .call(
            "CreateMessageLog",
            {
                "call_direction": "inbound",
                "from": "+14155550100",
                "to": "+18185559876",
                "content": "Running late",
                "contact_id": "c-1",
                "messageid": "msg-1",
            },
        )
        .to_json()
    )

    assert isinstance(created, dict)
    stored = crm_server.activities[created["activity_id"]]
    assert stored["type"] == "sms"
    assert stored["subject"] == "SMS from +14155550100"
    assert stored["notes"] == "Running late"
    assert stored["from"] == "+14155550100"


def test_update_message_log_changes_the_logged_message(crm_server: GenericCrmSandbox) -> None:
    # As the portal does (integrations/messaging.py): CreateMessageLog when the text arrives,
    # then UpdateMessageLog with the same values, the new status and the activity id.
    message = {
        "call_direction": "outbound",
        "from": "+18185559876",
        "to": "+14155550100",
        "content": "Your table is ready",
        "contact_id": "c-1",
        "messageid": "msg-1",
        "status": "queued",
    }
    client = crm_client(crm_server)
    activity_id = client.call("CreateMessageLog", message).first()["activity_id"]
    assert crm_server.activities[activity_id]["status"] == "open"

    updated = client.call(
        "UpdateMessageLog",
        {**message, "status": "delivered", "user_id": "u-1002", "activity_id": activity_id},
    ).first()

    assert updated == {"activity_id": activity_id}
    sent = crm_server.last(f"/activities/{activity_id}", "PUT")
    assert sent is not None
    assert sent.json == {
        "subject": "SMS to +14155550100",
        "status": "delivered",
        "user_id": "u-1002",
        "notes": "Your table is ready",
        "message_id": "msg-1",
    }
    stored = crm_server.activities[activity_id]
    assert stored["status"] == "delivered"
    assert stored["user_id"] == "u-1002"
    assert stored["version"] == 2
    assert stored["updated_at"] >= stored["created_at"]
    # What the update does not send is kept.
    assert stored["type"] == "sms"
    assert stored["direction"] == "outbound"
    assert stored["contact_id"] == "c-1"
    assert stored["to"] == "+14155550100"
    assert len(crm_server.activities) == 1


# -- the HTTP door beyond TestExampleCrmHttpDoor -----------------------------------------


def test_a_retry_after_longer_than_we_block_is_handed_to_the_task(
    crm_server: GenericCrmSandbox, sleeps: SleepRecorder
) -> None:
    crm_server.rate_limit_next("/users", retry_after=120)
    session = HttpSession(allow_private_networks=True, sleep=sleeps, backoff_max=30)

    with pytest.raises(IntegrationError) as caught:
        crm_client(crm_server, session=session).call("Users")

    assert caught.value.status == 429
    assert caught.value.permanent is False
    assert caught.value.retry_after == 120
    assert sleeps.waits == []


def test_a_5xx_on_a_create_is_not_retried(
    crm_server: GenericCrmSandbox, sleeps: SleepRecorder
) -> None:
    crm_server.fail_next("/activities", status=500)
    session = HttpSession(allow_private_networks=True, sleep=sleeps)

    with pytest.raises(IntegrationError) as caught:
        crm_client(crm_server, session=session).call("CreateActivity", CALL)

    assert caught.value.permanent is False
    assert len(crm_server.requests_to("/activities", "POST")) == 1
    assert crm_server.activities == {}
    assert sleeps.waits == []
