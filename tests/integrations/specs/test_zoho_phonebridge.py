"""zoho-phonebridge against the Zoho sandbox: OAuth with Zoho's quirks, Install, call events."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest
import requests

from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import SpecClient
from integrations.engine.errors import IntegrationError
from integrations.engine.http import HttpSession
from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.zoho import ZohoPhoneBridgeSandbox
from tests.integrations.specs.conftest import SleepRecorder, builtin_spec
from tests.integrations.specs.contract import (
    CrmContract,
    CrmSetup,
    DoorCall,
    DoorSetup,
    HttpDoorContract,
    RecordedExchanges,
)

SPEC_ID = "zoho-phonebridge"
PHONEBRIDGE = "/crm/v2/phonebridge"
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
ALICE = "4150868000000225013"
JANE = "4150868000000301001"
PORTAL = {
    "clicktocall_url": "https://portal.example/api/v1/hooks/crm/inst-key/clicktocall",
    "callcontrol_url": "https://portal.example/api/v1/hooks/crm/inst-key",
}
INBOUND = {
    "call_id": "call-0001",
    "call_direction": "inbound",
    "caller_number": "+14155550100",
    "called_number": "+18185559876",
    "user_id": ALICE,
}


def connected_store(server: ZohoPhoneBridgeSandbox) -> InMemoryTokenStore:
    body = server.issue_tokens()
    return InMemoryTokenStore(
        TokenSet(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            expires_at=time.time() + body["expires_in"],
            extra={"api_domain": body["api_domain"]},
        )
    )


def zoho_client(
    server: ZohoPhoneBridgeSandbox,
    *,
    store: InMemoryTokenStore | None = None,
    session: HttpSession | None = None,
    allow_private_networks: bool = True,
    system_values: dict[str, Any] | None = None,
    **properties: Any,
) -> SpecClient:
    values = {
        "Accounts URL": server.url,
        "Client ID": server.client_id,
        "Client Secret": server.client_secret,
        "Callback Token": "callback-token-1",
    }
    values.update({name.replace("_", " "): value for name, value in properties.items()})
    return SpecClient(
        builtin_spec(SPEC_ID),
        properties={k: v for k, v in values.items() if v is not None},
        token_store=store if store is not None else connected_store(server),
        session=session,
        allow_private_networks=allow_private_networks,
        system_values=system_values if system_values is not None else PORTAL,
    )


def token_of(store: InMemoryTokenStore) -> str:
    tokens = store.load()
    assert tokens is not None
    return tokens.access_token


@pytest.fixture
def integrated(zoho_server: ZohoPhoneBridgeSandbox) -> ZohoPhoneBridgeSandbox:
    """The sandbox with PhoneBridge enabled, as after Install."""
    zoho_server.integrated = True
    return zoho_server


class TestZohoContract(CrmContract):
    spec_id = SPEC_ID

    @pytest.fixture
    def crm(self, zoho_server: ZohoPhoneBridgeSandbox) -> CrmSetup:
        client = zoho_client(zoho_server)
        client.install()
        return CrmSetup(
            client=client,
            server=zoho_server,
            known_phone="+14155550100",
            known_name="Jane Doe",
            unknown_phone="+14155550999",
        )


class TestZohoHttpDoor(HttpDoorContract):
    spec_id = SPEC_ID

    @pytest.fixture
    def door(self, integrated: ZohoPhoneBridgeSandbox) -> DoorSetup:
        def connect(session: HttpSession, base_url: str | None = None) -> SpecClient:
            if base_url is None:
                return zoho_client(integrated, session=session)
            # A token without Zoho's api_domain: the API Domain property is where calls go.
            store = InMemoryTokenStore(TokenSet("1000.access", "1000.refresh", time.time() + 3600))
            return zoho_client(integrated, store=store, session=session, API_Domain=base_url)

        return DoorSetup(
            server=integrated,
            connect=connect,
            lookup=DoorCall(
                "FindContact",
                {"phone": "+14155550100"},
                PHONEBRIDGE + "/callerdetails",
                "contact_id",
            ),
            write=DoorCall("CallRinging", INBOUND, PHONEBRIDGE + "/callreceived", "contact_id"),
        )


class TestZohoRecorded(RecordedExchanges):
    spec_id = SPEC_ID
    replay_values = {"API Domain": "https://www.zohoapis.com"}


# -- OAuth -------------------------------------------------------------------------------


def test_authorization_goes_to_zoho_accounts_by_default() -> None:
    client = SpecClient(
        builtin_spec(SPEC_ID), properties={"Client ID": "1000.ABC", "Client Secret": "s"}
    )

    url = client.authorization_url(state="state-1", redirect_uri=REDIRECT_URI)

    assert url.startswith("https://accounts.zoho.com/oauth/v2/auth?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["access_type"] == "offline"
    assert query["prompt"] == "consent"
    assert query["scope"] == "PhoneBridge.call.ALL,PhoneBridge.zohoone.search"
    assert client.dry_run("Users")[0].url == "https://www.zohoapis.com/crm/v2/phonebridge/users"


def test_connect_flow_keeps_the_api_domain_and_uses_the_zoho_scheme(
    integrated: ZohoPhoneBridgeSandbox,
) -> None:
    integrated.configure(auto_approve=True)
    store = InMemoryTokenStore()
    client = zoho_client(integrated, store=store)

    url = client.authorization_url(state="state-1", redirect_uri=REDIRECT_URI)
    consent = requests.get(url, allow_redirects=False, timeout=5)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(consent.headers["Location"]).query))
    tokens = client.exchange_code(code=code["code"], redirect_uri=REDIRECT_URI)
    users = client.call("Users").records

    assert tokens.extra == {"api_domain": integrated.url}
    assert len(users) == 3
    sent = integrated.last(PHONEBRIDGE + "/users")
    assert sent is not None
    assert sent.header("Authorization") == f"Zoho-oauthtoken {tokens.access_token}"


def test_an_expired_token_is_refreshed_once(integrated: ZohoPhoneBridgeSandbox) -> None:
    store = connected_store(integrated)
    old = token_of(store)
    client = zoho_client(integrated, store=store)
    integrated.advance_clock(3700)

    assert len(client.call("Users").records) == 3

    assert len(integrated.requests_to("/oauth/v2/token")) == 1
    sent = [r.header("Authorization") for r in integrated.requests_to(PHONEBRIDGE + "/users")]
    assert sent == [f"Zoho-oauthtoken {old}", f"Zoho-oauthtoken {token_of(store)}"]
    tokens = store.load()
    assert tokens is not None and tokens.extra["api_domain"] == integrated.url


def test_a_refused_refresh_is_auth_failed_even_with_zohos_200(
    integrated: ZohoPhoneBridgeSandbox,
) -> None:
    store = connected_store(integrated)
    tokens = store.load()
    assert tokens is not None and tokens.refresh_token
    integrated.oauth.revoke(tokens.refresh_token)

    with pytest.raises(IntegrationError) as caught:
        zoho_client(integrated, store=store).call("Users")

    assert caught.value.auth_failed is True
    refresh = integrated.last("/oauth/v2/token")
    assert refresh is not None and refresh.status == 200  # Zoho: {"error": "invalid_code"}


# -- Install / Uninstall -----------------------------------------------------------------


def test_install_enables_phonebridge_and_registers_call_control(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    store = connected_store(zoho_server)

    zoho_client(zoho_server, store=store).install()

    assert zoho_server.integrated is True
    assert [r.path for r in zoho_server.requests] == [
        PHONEBRIDGE + "/integrate",
        PHONEBRIDGE + "/clicktocallandcallcontrol",
    ]
    registration = zoho_server.call_control
    assert registration is not None
    base = PORTAL["callcontrol_url"]
    assert registration["urls"] == {
        "clicktocallurl": PORTAL["clicktocall_url"],
        "answerurl": base + "/answer",
        "hungupurl": base + "/hangup",
        "muteurl": base + "/mute",
        "unmuteurl": base + "/unmute",
        "holdurl": base + "/hold",
        "unholdurl": base + "/unhold",
        "keypressurl": base + "/keypress",
    }
    assert registration["authorizationparam"] == {
        "name": "X-Patchbay-Token",
        "value": "callback-token-1",
    }
    sent = zoho_server.last(PHONEBRIDGE + "/clicktocallandcallcontrol")
    assert sent is not None
    assert sent.header("Content-Type") == "application/x-www-form-urlencoded"
    assert sent.header("Authorization") == f"Zoho-oauthtoken {token_of(store)}"


def test_install_without_a_callback_token_sends_no_authorizationparam(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    zoho_client(zoho_server, Callback_Token=None).install()

    sent = zoho_server.last(PHONEBRIDGE + "/clicktocallandcallcontrol")
    assert sent is not None and "authorizationparam" not in sent.form
    assert zoho_server.call_control is not None


def test_zoho_click_to_call_reaches_the_registered_url_with_the_token(
    zoho_server: ZohoPhoneBridgeSandbox, recorder_server: RecorderSandbox
) -> None:
    endpoint = recorder_server.url + "/api/v1/hooks/crm/inst-key"
    client = zoho_client(
        zoho_server,
        system_values={"clicktocall_url": endpoint + "/clicktocall", "callcontrol_url": endpoint},
    )
    client.install()

    zoho_server.click_to_call("+14155550100", userid=ALICE)
    zoho_server.send_call_control("hold", "call-0001", userid=ALICE)

    clicked = recorder_server.last("/api/v1/hooks/crm/inst-key/clicktocall")
    assert clicked is not None
    assert clicked.header("X-Patchbay-Token") == "callback-token-1"
    assert clicked.form["tonumber"] == ["+14155550100"]
    assert recorder_server.last("/api/v1/hooks/crm/inst-key/hold") is not None


def test_installing_twice_accepts_pbx_already_enabled(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    client = zoho_client(zoho_server)
    client.install()

    result = client.install()  # Zoho answers the second /integrate 403 PBX_ALREADY_ENABLED

    assert result.values == {}
    assert zoho_server.integrated is True
    assert zoho_server.call_control is not None
    integrate = [r for r in zoho_server.requests if r.path == PHONEBRIDGE + "/integrate"]
    assert len(integrate) == 2  # answered 403, not retried
    assert [r.path for r in zoho_server.requests][-1] == PHONEBRIDGE + "/clicktocallandcallcontrol"


def test_install_fails_when_a_different_pbx_is_enabled(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    # 403 DIFFERENT_PBX_ALREADY_ENABLED contains the text PBX_ALREADY_ENABLED: only the quoted
    # code is accepted, so this one must stop the install at its first step.
    zoho_server.configure(other_pbx_enabled=True)

    with pytest.raises(IntegrationError) as caught:
        zoho_client(zoho_server).install()

    assert caught.value.status == 403
    assert caught.value.permanent is True
    assert "Different PBX has been enabled for the Account" in caught.value.message
    assert "DIFFERENT_PBX_ALREADY_ENABLED" in caught.value.message
    assert [r.path for r in zoho_server.requests] == [PHONEBRIDGE + "/integrate"]
    assert zoho_server.integrated is False
    assert zoho_server.call_control is None


def test_reinstalling_over_our_own_pbx_succeeds(integrated: ZohoPhoneBridgeSandbox) -> None:
    zoho_client(integrated).install()  # the account already has our PBX enabled

    integrate = integrated.last(PHONEBRIDGE + "/integrate")
    assert integrate is not None and integrate.status == 403
    assert integrated.integrated is True
    assert integrated.call_control is not None


@pytest.mark.parametrize(
    ("setting", "status", "shown"),
    [
        ("pbx_registered", 400, "Patchbay is not registered"),
        ("user_privileged", 403, "doesn't have enough privilege in Zoho CRM"),
    ],
)
def test_install_fails_with_zohos_reason(
    zoho_server: ZohoPhoneBridgeSandbox, setting: str, status: int, shown: str
) -> None:
    zoho_server.configure(**{setting: False})

    with pytest.raises(IntegrationError) as caught:
        zoho_client(zoho_server).install()

    assert caught.value.status == status
    assert caught.value.permanent is True
    assert shown in caught.value.message
    assert [r.path for r in zoho_server.requests] == [PHONEBRIDGE + "/integrate"]


def test_install_still_fails_on_another_403(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    zoho_server.license_allows_pbx = False  # every PhoneBridge call: 403 NO_PERMISSION

    with pytest.raises(IntegrationError) as caught:
        zoho_client(zoho_server).install()

    assert caught.value.status == 403
    assert caught.value.permanent is True
    assert "NO_PERMISSION" in caught.value.message
    assert [r.path for r in zoho_server.requests] == [PHONEBRIDGE + "/integrate"]


def test_uninstall_removes_call_control_and_the_integration(
    integrated: ZohoPhoneBridgeSandbox,
) -> None:
    client = zoho_client(integrated)
    integrated.call_control = {"urls": {"clicktocallurl": PORTAL["clicktocall_url"]}}

    client.uninstall()

    assert integrated.integrated is False
    assert integrated.call_control is None
    assert [(r.method, r.path) for r in integrated.requests] == [
        ("DELETE", PHONEBRIDGE + "/clicktocallandcallcontrol"),
        ("DELETE", PHONEBRIDGE + "/integrate"),
    ]


# -- methods -----------------------------------------------------------------------------


def test_users(integrated: ZohoPhoneBridgeSandbox) -> None:
    records = zoho_client(integrated).call("Users").records

    assert records[0] == {
        "user_id": ALICE,
        "user_name": "Alice Admin",
        "user_email": "alice@zoho.example",
    }


def test_find_contact_maps_caller_details(integrated: ZohoPhoneBridgeSandbox) -> None:
    result = zoho_client(integrated).call("FindContact", {"phone": "+14155550100"})

    (jane,) = result.records
    assert jane == {
        "contact_id": JANE,
        "contact_name": "Jane Doe",
        "contact_module": "Contacts",
        "contact_company": "Acme Corp",
        "contact_email": "jane.doe@acme.example",
        "contact_phone": "+14155550100",
        "contact_mobile": "+14155550101",
        "contact_department": "Purchasing",
        "contact_link": f"{integrated.url}/crm/tab/Contacts/{JANE}",
        "potential_names": ["Acme renewal"],
    }
    sent = integrated.last(PHONEBRIDGE + "/callerdetails")
    assert sent is not None and sent.query == {"phonenumber": ["+14155550100"]}


def test_find_contact_204_is_no_match(integrated: ZohoPhoneBridgeSandbox) -> None:
    result = zoho_client(integrated).call("FindContact", {"phone": "+14155550999"})

    assert result.to_json() == []
    sent = integrated.requests_to(PHONEBRIDGE + "/callerdetails")
    assert [r.status for r in sent] == [204, 204]
    assert [r.query["phonenumber"][0] for r in sent] == ["+14155550999", "4155550999"]


def test_find_contact_returns_both_twins(integrated: ZohoPhoneBridgeSandbox) -> None:
    result = zoho_client(integrated).call("FindContact", {"phone": "+14155550177"})

    assert {r["contact_name"] for r in result.records} == {"Sam Twin", "Sally Twin"}


def test_call_ringing_notifies_callreceived_and_returns_the_caller(
    integrated: ZohoPhoneBridgeSandbox,
) -> None:
    result = zoho_client(integrated).call("CallRinging", INBOUND)

    assert [r["contact_id"] for r in result.records] == [JANE]
    sent = integrated.last(PHONEBRIDGE + "/callreceived")
    assert sent is not None
    assert sent.form == {
        "callrefid": ["call-0001"],
        "fromnumber": ["0014155550100"],
        "tonumber": ["0018185559876"],
        "userid": [ALICE],
    }


def test_call_answered(integrated: ZohoPhoneBridgeSandbox) -> None:
    result = zoho_client(integrated).call("CallAnswered", INBOUND)

    assert result.first()["contact_name"] == "Jane Doe"
    assert [e["event"] for e in integrated.events_for("call-0001")] == ["callanswered"]


def test_call_ended_sends_the_start_time_in_gmt(integrated: ZohoPhoneBridgeSandbox) -> None:
    params = {
        **INBOUND,
        "call_start": "2024-05-01T12:00:00+02:00",
        "call_duration": 65,
        "recording_url": "https://recordings.example/call-0001.mp3",
        "note": "Renewal call",
    }

    zoho_client(integrated).call("CallEnded", params)

    sent = integrated.last(PHONEBRIDGE + "/callhungup")
    assert sent is not None
    assert sent.form["callstarttime"] == ["2024-05-01 10:00:00"]
    assert sent.form["direction"] == ["inbound"]
    assert sent.form["duration"] == ["65"]
    assert sent.form["desc"] == ["Renewal call"]
    (activity,) = integrated.activities_for("call-0001")
    assert activity["voiceurl"] == "https://recordings.example/call-0001.mp3"
    assert activity["entity"] == [{"Id": JANE, "Module": "Contacts"}]


def test_call_missed_sends_the_missed_time_in_gmt(integrated: ZohoPhoneBridgeSandbox) -> None:
    params = {
        **INBOUND,
        "caller_number": "+14155550142",
        "call_start": "2024-05-01T10:00:00Z",
        "voicemail_url": "https://recordings.example/vm-1.mp3",
    }

    result = zoho_client(integrated).call("CallMissed", params)

    assert result.first()["contact_name"] == "Luis Lead"
    sent = integrated.last(PHONEBRIDGE + "/callmissed")
    assert sent is not None
    assert sent.form["callmissedtime"] == ["2024-05-01 10:00:00"]
    assert sent.form["voicemailurl"] == ["https://recordings.example/vm-1.mp3"]
    (activity,) = integrated.activities_for("call-0001")
    assert activity["event"] == "callmissed"


@pytest.mark.parametrize(
    ("call_status", "customer_status"),
    [("ringing", "inprogress"), ("answered", "success"), ("busy", "busy"), ("missed", "noanswer")],
)
def test_call_dialed_reports_the_customer_status(
    integrated: ZohoPhoneBridgeSandbox, call_status: str, customer_status: str
) -> None:
    params = {
        "call_id": "call-0002",
        "call_direction": "outbound",
        "call_status": call_status,
        "caller_number": "+18185559876",
        "called_number": "+14155550177",
        "user_id": ALICE,
    }

    result = zoho_client(integrated).call("CallDialed", params)

    assert {r["contact_name"] for r in result.records} == {"Sam Twin", "Sally Twin"}
    sent = integrated.last(PHONEBRIDGE + "/calldialed")
    assert sent is not None and sent.form["customerstatus"] == [customer_status]


def test_upload_recording_sets_the_voice_url(integrated: ZohoPhoneBridgeSandbox) -> None:
    client = zoho_client(integrated)
    client.call("CallEnded", {**INBOUND, "call_start": "2024-05-01T10:00:00Z", "call_duration": 5})

    result = client.call(
        "UploadRecording",
        {"call_id": "call-0001", "recording_url": "https://recordings.example/late.mp3"},
    )

    assert result.first() == {"zoho_code": "SUCCESS"}
    assert integrated.voice_urls == [
        {"callrefid": "call-0001", "voiceurl": "https://recordings.example/late.mp3"}
    ]
    (activity,) = integrated.activities_for("call-0001")
    assert activity["voiceurl"] == "https://recordings.example/late.mp3"


def test_a_zoho_error_is_shown_with_its_message(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    # Not integrated yet: Zoho answers 400 PBX_NOT_INTEGRATED, which is not retried.
    with pytest.raises(IntegrationError) as caught:
        zoho_client(zoho_server).call("Users")

    assert caught.value.status == 400
    assert caught.value.permanent is True
    assert "PBX_NOT_INTEGRATED" in caught.value.message


# -- the HTTP door beyond TestZohoHttpDoor ----------------------------------------------


def test_a_5xx_on_an_event_post_shows_zohos_message(
    integrated: ZohoPhoneBridgeSandbox, sleeps: SleepRecorder
) -> None:
    integrated.fail_next(PHONEBRIDGE + "/callreceived", status=500)
    session = HttpSession(allow_private_networks=True, sleep=sleeps)

    with pytest.raises(IntegrationError) as caught:
        zoho_client(integrated, session=session).call("CallRinging", INBOUND)

    assert caught.value.permanent is False
    assert "Internal server error" in caught.value.message
    assert len(integrated.requests_to(PHONEBRIDGE + "/callreceived")) == 1
