"""The Zoho PhoneBridge sandbox, driven with plain requests."""

from __future__ import annotations

import re
import urllib.parse

import pytest
import requests

from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.zoho import ZohoPhoneBridgeSandbox

REDIRECT = "http://127.0.0.1:9/oauth/callback"
PB = "/crm/v2/phonebridge"


def authorize_params(server: ZohoPhoneBridgeSandbox, **overrides: str) -> dict[str, str]:
    params = {
        "client_id": server.client_id,
        "redirect_uri": REDIRECT,
        "state": "state-123",
        "scope": "PhoneBridge.call.ALL,PhoneBridge.zohoone.search",
        "response_type": "code",
        "access_type": "offline",
    }
    params.update(overrides)
    return params


def get_code(server: ZohoPhoneBridgeSandbox) -> str:
    page = requests.get(server.url + "/oauth/v2/auth", params=authorize_params(server), timeout=5)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    fields["decision"] = "accept"
    approved = requests.post(
        server.url + "/oauth/v2/auth/approve", data=fields, allow_redirects=False, timeout=5
    )
    location = urllib.parse.urlsplit(approved.headers["Location"])
    return urllib.parse.parse_qs(location.query)["code"][0]


def exchange(server: ZohoPhoneBridgeSandbox, grant: str, **overrides: str) -> requests.Response:
    params = {
        "grant_type": "authorization_code",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "redirect_uri": REDIRECT,
        "code": grant,
    }
    params.update(overrides)
    return requests.post(server.url + "/oauth/v2/token", params=params, timeout=5)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {token}"}


@pytest.fixture
def token(zoho_server: ZohoPhoneBridgeSandbox) -> str:
    """A live access token for an integrated account."""
    access = zoho_server.issue_tokens()["access_token"]
    assert requests.post(zoho_server.url + PB + "/integrate", headers=auth(access), timeout=5).ok
    return access


# -- OAuth -------------------------------------------------------------------------------


def test_consent_page_has_an_accept_button(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    page = requests.get(
        zoho_server.url + "/oauth/v2/auth", params=authorize_params(zoho_server), timeout=5
    )
    assert page.status_code == 200
    assert 'id="accept"' in page.text
    assert 'value="state-123"' in page.text


def test_accept_redirects_with_code_state_and_accounts_server(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    page = requests.get(
        zoho_server.url + "/oauth/v2/auth", params=authorize_params(zoho_server), timeout=5
    )
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    approved = requests.post(
        zoho_server.url + "/oauth/v2/auth/approve",
        data={**fields, "decision": "accept"},
        allow_redirects=False,
        timeout=5,
    )
    assert approved.status_code == 302
    location = approved.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["state"] == ["state-123"]
    assert query["code"][0].startswith("1000.")
    assert query["accounts-server"] == [zoho_server.url]


def test_deny_redirects_with_access_denied(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    denied = requests.post(
        zoho_server.url + "/oauth/v2/auth/approve",
        data={**authorize_params(zoho_server), "decision": "deny"},
        allow_redirects=False,
        timeout=5,
    )
    assert "error=access_denied" in denied.headers["Location"]


def test_auto_approve_redirects_at_once(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    zoho_server.configure(auto_approve=True)
    response = requests.get(
        zoho_server.url + "/oauth/v2/auth",
        params=authorize_params(zoho_server),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    assert "code=" in response.headers["Location"]


def test_unknown_client_gets_an_error_page(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    response = requests.get(
        zoho_server.url + "/oauth/v2/auth",
        params=authorize_params(zoho_server, client_id="1000.NOPE"),
        timeout=5,
    )
    assert response.status_code == 400
    assert "invalid_client" in response.text


def test_code_exchange_returns_tokens_and_api_domain(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    body = exchange(zoho_server, get_code(zoho_server)).json()
    assert body["access_token"].startswith("1000.")
    assert body["refresh_token"].startswith("1000.")
    assert body["api_domain"] == zoho_server.url
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600


def test_code_exchange_accepts_a_form_body(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    response = requests.post(
        zoho_server.url + "/oauth/v2/token",
        data={
            "grant_type": "authorization_code",
            "client_id": zoho_server.client_id,
            "client_secret": zoho_server.client_secret,
            "redirect_uri": REDIRECT,
            "code": get_code(zoho_server),
        },
        timeout=5,
    )
    assert "access_token" in response.json()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_id": "1000.WRONG"}, "invalid_client"),
        ({"client_secret": "wrong"}, "invalid_client_secret"),
        ({"code": "1000.bogus.bogus"}, "invalid_code"),
        ({"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "invalid_redirect_uri"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_token_errors_are_zoho_style_with_status_200(
    zoho_server: ZohoPhoneBridgeSandbox, overrides: dict[str, str], error: str
) -> None:
    response = exchange(zoho_server, get_code(zoho_server), **overrides)
    assert response.status_code == 200
    assert response.json() == {"error": error}


def test_token_error_status_is_tunable(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    zoho_server.configure(token_error_status=400)
    assert exchange(zoho_server, "1000.bogus.bogus").status_code == 400


def test_a_code_works_once(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    code = get_code(zoho_server)
    assert "access_token" in exchange(zoho_server, code).json()
    assert exchange(zoho_server, code).json() == {"error": "invalid_code"}


def test_access_token_expires_and_refresh_issues_a_new_one(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    zoho_server.configure(token_lifetime=60)
    tokens = exchange(zoho_server, get_code(zoho_server)).json()
    assert tokens["expires_in"] == 60
    headers = auth(tokens["access_token"])
    assert requests.post(zoho_server.url + PB + "/integrate", headers=headers, timeout=5).ok

    zoho_server.advance_clock(61)
    expired = requests.get(zoho_server.url + PB + "/users", headers=headers, timeout=5)
    assert expired.status_code == 401
    assert expired.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }

    refreshed = requests.post(
        zoho_server.url + "/oauth/v2/token",
        params={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": zoho_server.client_id,
            "client_secret": zoho_server.client_secret,
        },
        timeout=5,
    ).json()
    assert "refresh_token" not in refreshed
    assert refreshed["api_domain"] == zoho_server.url
    users = requests.get(
        zoho_server.url + PB + "/users", headers=auth(refreshed["access_token"]), timeout=5
    )
    assert users.status_code == 200


def test_invalid_refresh_token_is_invalid_code(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    response = requests.post(
        zoho_server.url + "/oauth/v2/token",
        params={
            "grant_type": "refresh_token",
            "refresh_token": "1000.nope.nope",
            "client_id": zoho_server.client_id,
            "client_secret": zoho_server.client_secret,
        },
        timeout=5,
    )
    assert response.json() == {"error": "invalid_code"}


def test_revoke_kills_refresh_and_access_tokens(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    tokens = zoho_server.issue_tokens()
    revoked = requests.post(
        zoho_server.url + "/oauth/v2/token/revoke",
        params={"token": tokens["refresh_token"]},
        timeout=5,
    )
    assert revoked.status_code == 200
    response = requests.post(
        zoho_server.url + PB + "/integrate", headers=auth(tokens["access_token"]), timeout=5
    )
    assert response.status_code == 401


# -- authentication of PhoneBridge calls ---------------------------------------------------


def test_missing_header_is_authentication_failure(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    response = requests.get(zoho_server.url + PB + "/users", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILURE"


@pytest.mark.parametrize("header", ["Zoho-oauthtoken 1000.bad.bad", "Bearer {token}"])
def test_bad_token_or_scheme_is_invalid_token(
    zoho_server: ZohoPhoneBridgeSandbox, token: str, header: str
) -> None:
    response = requests.get(
        zoho_server.url + PB + "/users",
        headers={"Authorization": header.format(token=token)},
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"


def test_expire_tokens_helper(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    zoho_server.expire_tokens()
    response = requests.get(zoho_server.url + PB + "/users", headers=auth(token), timeout=5)
    assert response.status_code == 401


# -- integration ---------------------------------------------------------------------------


def test_integrate_then_again_is_already_enabled(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    headers = auth(zoho_server.issue_tokens()["access_token"])
    first = requests.post(zoho_server.url + PB + "/integrate", headers=headers, timeout=5)
    assert first.json() == {
        "message": "Patchbay Integration is successful",
        "status": "success",
        "code": "SUCCESS",
    }
    again = requests.post(zoho_server.url + PB + "/integrate", headers=headers, timeout=5)
    assert again.status_code == 403
    assert again.json()["code"] == "PBX_ALREADY_ENABLED"
    removed = requests.delete(zoho_server.url + PB + "/integrate", headers=headers, timeout=5)
    assert removed.json()["code"] == "SUCCESS"
    assert zoho_server.integrated is False


def test_a_different_pbx_already_enabled_is_its_own_403(
    zoho_server: ZohoPhoneBridgeSandbox,
) -> None:
    zoho_server.configure(other_pbx_enabled=True)
    headers = auth(zoho_server.issue_tokens()["access_token"])

    response = requests.post(zoho_server.url + PB + "/integrate", headers=headers, timeout=5)

    assert response.status_code == 403
    assert response.json() == {
        "message": "Different PBX has been enabled for the Account",
        "status": "error",
        "details": {},
        "code": "DIFFERENT_PBX_ALREADY_ENABLED",
    }
    assert zoho_server.integrated is False


def test_other_pbx_enabled_is_restored_by_reset(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    zoho_server.configure(other_pbx_enabled=True)
    zoho_server.reset()
    headers = auth(zoho_server.issue_tokens()["access_token"])

    response = requests.post(zoho_server.url + PB + "/integrate", headers=headers, timeout=5)

    assert response.json()["code"] == "SUCCESS"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/integrate"),
        ("DELETE", "/integrate"),
        ("POST", "/clicktocallandcallcontrol"),
        ("DELETE", "/clicktocallandcallcontrol"),
        ("GET", "/users"),
    ],
)
def test_an_unregistered_pbx_is_pbx_not_registered(
    zoho_server: ZohoPhoneBridgeSandbox, token: str, method: str, path: str
) -> None:
    zoho_server.configure(pbx_registered=False)

    response = requests.request(
        method,
        zoho_server.url + PB + path,
        data={"clicktocallurl": "https://pbx.example/c2c"},
        headers=auth(token),
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json() == {
        "message": "Patchbay is not registered",
        "status": "error",
        "details": {},
        "code": "PBX_NOT_REGISTERED",
    }


def test_an_unprivileged_user_cannot_integrate(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    zoho_server.configure(user_privileged=False)
    headers = auth(zoho_server.issue_tokens()["access_token"])

    response = requests.post(zoho_server.url + PB + "/integrate", headers=headers, timeout=5)

    assert response.status_code == 403
    # The seed's body for this case, code INTERNAL_ERROR included.
    assert response.json() == {
        "message": "Requested user doesn't have enough privilege in Zoho CRM to enable "
        "PhoneBridge integration",
        "status": "error",
        "details": {},
        "code": "INTERNAL_ERROR",
    }
    assert zoho_server.integrated is False


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/clicktocallandcallcontrol"), ("GET", "/users")]
)
def test_an_unprivileged_user_cannot_set_up_call_control_or_list_users(
    zoho_server: ZohoPhoneBridgeSandbox, token: str, method: str, path: str
) -> None:
    zoho_server.configure(user_privileged=False)

    response = requests.request(
        method,
        zoho_server.url + PB + path,
        data={"clicktocallurl": "https://pbx.example/c2c"},
        headers=auth(token),
        timeout=5,
    )

    assert response.status_code == 403
    assert response.json() == {
        "message": "Requested user doesn't have enough privilege to perform this process",
        "status": "error",
        "details": {},
        "code": "NO_PERMISSION",
    }
    assert zoho_server.call_control is None


def test_users_need_the_integration(zoho_server: ZohoPhoneBridgeSandbox) -> None:
    headers = auth(zoho_server.issue_tokens()["access_token"])
    response = requests.get(zoho_server.url + PB + "/users", headers=headers, timeout=5)
    assert response.status_code == 400
    assert response.json()["code"] == "PBX_NOT_INTEGRATED"


def test_users_list(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    users = requests.get(zoho_server.url + PB + "/users", headers=auth(token), timeout=5).json()
    assert users["users"][0] == {
        "userid": "4150868000000225013",
        "username": "Alice Admin",
        "email": "alice@zoho.example",
    }


def test_license_without_pbx_is_forbidden(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    zoho_server.configure(license_allows_pbx=False)
    response = requests.get(zoho_server.url + PB + "/users", headers=auth(token), timeout=5)
    assert response.status_code == 403
    assert response.json()["code"] == "NO_PERMISSION"


def test_click_to_call_registration(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    missing = requests.post(
        zoho_server.url + PB + "/clicktocallandcallcontrol", headers=auth(token), timeout=5
    )
    assert missing.status_code == 400
    assert missing.json()["details"] == {"param": "clicktocallurl"}
    registered = requests.post(
        zoho_server.url + PB + "/clicktocallandcallcontrol",
        headers=auth(token),
        data={
            "clicktocallurl": "http://127.0.0.1:9/zoho/clicktocall",
            "hungupurl": "http://127.0.0.1:9/zoho/hangup",
            "userid": "4150868000000225013",
            "authorizationparam": '{"name": "X-Key", "value": "k"}',
        },
        timeout=5,
    )
    assert registered.json()["code"] == "SUCCESS"
    assert zoho_server.call_control["urls"]["hungupurl"] == "http://127.0.0.1:9/zoho/hangup"
    assert zoho_server.call_control["authorizationparam"] == {"name": "X-Key", "value": "k"}


def test_click_to_call_posts_to_the_registered_url(
    zoho_server: ZohoPhoneBridgeSandbox, token: str
) -> None:
    with RecorderSandbox() as pbx:
        requests.post(
            zoho_server.url + PB + "/clicktocallandcallcontrol",
            headers=auth(token),
            data={
                "clicktocallurl": pbx.url + "/c2c",
                "answerurl": pbx.url + "/answer",
                "clicktocallparam": '[{"name": "pbxuserid", "value": "u1"}]',
                "authorizationparam": '{"name": "X-Key", "value": "k"}',
            },
            timeout=5,
        )
        zoho_server.click_to_call("+14155550100", userid="4150868000000225013")
        zoho_server.send_call_control("answer", "call-1")
        c2c = pbx.last("/c2c")
        assert c2c.form["tonumber"] == ["+14155550100"]
        assert c2c.form["pbxuserid"] == ["u1"]
        assert c2c.header("X-Key") == "k"
        assert pbx.last("/answer").form["callrefid"] == ["call-1"]


# -- caller lookup and call events -------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "name"),
    [
        ("+14155550100", "Jane Doe"),  # stored "+1 (415) 555-0100"
        ("4155550101", "Jane Doe"),  # stored as Mobile "415.555.0101"
        ("+14155550142", "Luis Lead"),  # a Lead stored "(415) 555-0142"
        ("0012125550199", "Globex"),  # an Account stored "001 212 555 0199"
        ("+442079460958", "Ana Sousa"),
    ],
)
def test_caller_details_matches_any_format(
    zoho_server: ZohoPhoneBridgeSandbox, token: str, number: str, name: str
) -> None:
    response = requests.get(
        zoho_server.url + PB + "/callerdetails",
        params={"phonenumber": number},
        headers=auth(token),
        timeout=5,
    )
    assert response.status_code == 200
    record = response.json()["data"][0]
    assert record["Name"] == name
    assert record["Url"].startswith(zoho_server.url + "/crm/tab/")


def test_caller_details_returns_every_match(
    zoho_server: ZohoPhoneBridgeSandbox, token: str
) -> None:
    response = requests.get(
        zoho_server.url + PB + "/callerdetails",
        params={"phonenumber": "+14155550177"},
        headers=auth(token),
        timeout=5,
    )
    assert {r["Name"] for r in response.json()["data"]} == {"Sam Twin", "Sally Twin"}


def test_caller_details_unknown_number_is_204(
    zoho_server: ZohoPhoneBridgeSandbox, token: str
) -> None:
    response = requests.get(
        zoho_server.url + PB + "/callerdetails",
        params={"phonenumber": "+19995550000"},
        headers=auth(token),
        timeout=5,
    )
    assert response.status_code == 204
    assert response.content == b""


def test_missing_parameter_names_it(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    response = requests.post(
        zoho_server.url + PB + "/callreceived",
        data={"callrefid": "c1", "fromnumber": "+14155550100"},
        headers=auth(token),
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "One of the expected parameters is missing",
        "status": "error",
        "details": {"param": "tonumber"},
        "code": "REQUIRED_PARAM_MISSING",
    }


def test_call_flow_logs_one_activity_per_hangup(
    zoho_server: ZohoPhoneBridgeSandbox, token: str
) -> None:
    url, headers = zoho_server.url + PB, auth(token)
    call = {"callrefid": "call-42", "fromnumber": "+14155550100", "tonumber": "1001"}
    received = requests.post(url + "/callreceived", data=call, headers=headers, timeout=5)
    assert received.json()["data"][0]["Name"] == "Jane Doe"
    answered = requests.post(url + "/callanswered", data=call, headers=headers, timeout=5)
    assert answered.json() == {
        "data": [{"Name": "Jane Doe", "Id": "4150868000000301001", "Module": "Contacts"}]
    }
    hungup = {
        **call,
        "callstarttime": "2025-01-02 03:04:05",
        "direction": "inbound",
        "duration": "65",
    }
    assert requests.post(url + "/callhungup", data=hungup, headers=headers, timeout=5).ok
    assert [e["event"] for e in zoho_server.events_for("call-42")] == [
        "callreceived",
        "callanswered",
        "callhungup",
    ]
    activities = zoho_server.activities_for("call-42")
    assert len(activities) == 1
    assert activities[0]["entity"] == [{"Id": "4150868000000301001", "Module": "Contacts"}]

    requests.post(url + "/callhungup", data=hungup, headers=headers, timeout=5)
    assert len(zoho_server.activities_for("call-42")) == 2  # duplicates are visible


def test_callhungup_checks_formats(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    base = {
        "callrefid": "c",
        "fromnumber": "1",
        "tonumber": "2",
        "callstarttime": "2025-01-02 03:04:05",
        "direction": "inbound",
        "duration": "5",
    }
    for field, bad in [
        ("callstarttime", "2025-01-02T03:04:05Z"),
        ("direction", "sideways"),
        ("duration", "5.5"),
    ]:
        response = requests.post(
            zoho_server.url + PB + "/callhungup",
            data={**base, field: bad},
            headers=auth(token),
            timeout=5,
        )
        assert response.status_code == 400
        assert response.json()["details"] == {"param": field}
    assert zoho_server.call_activities == []


def test_callmissed_logs_unless_sequential(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    data = {
        "callrefid": "m1",
        "fromnumber": "+19995550000",
        "tonumber": "1001",
        "callmissedtime": "2025-01-02 03:04:05",
    }
    missed = requests.post(
        zoho_server.url + PB + "/callmissed", data=data, headers=auth(token), timeout=5
    )
    assert missed.status_code == 204  # unknown caller
    requests.post(
        zoho_server.url + PB + "/callmissed",
        data={**data, "callrefid": "m2", "sequential": "true"},
        headers=auth(token),
        timeout=5,
    )
    assert len(zoho_server.activities_for("m1")) == 1
    assert zoho_server.activities_for("m2") == []


def test_calldialed_returns_the_callee(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    data = {
        "callrefid": "d1",
        "fromnumber": "1001",
        "tonumber": "(415) 555-0142",
        "customerstatus": "inprogress",
    }
    response = requests.post(
        zoho_server.url + PB + "/calldialed", data=data, headers=auth(token), timeout=5
    )
    assert response.json()["data"][0]["Module"] == "Leads"
    bad = requests.post(
        zoho_server.url + PB + "/calldialed",
        data={**data, "customerstatus": "ringing"},
        headers=auth(token),
        timeout=5,
    )
    assert bad.status_code == 400


def test_voiceurl_attaches_to_the_activity(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    requests.post(
        zoho_server.url + PB + "/callhungup",
        data={
            "callrefid": "v1",
            "fromnumber": "+14155550100",
            "tonumber": "1001",
            "callstarttime": "2025-01-02 03:04:05",
            "direction": "inbound",
            "duration": "10",
        },
        headers=auth(token),
        timeout=5,
    )
    response = requests.post(
        zoho_server.url + PB + "/voiceurl",
        data={"callrefid": "v1", "voiceurl": "http://127.0.0.1/rec.wav"},
        headers=auth(token),
        timeout=5,
    )
    assert response.json() == {"status": "success", "code": "SUCCESS"}
    assert zoho_server.activities_for("v1")[0]["voiceurl"] == "http://127.0.0.1/rec.wav"


def test_injected_500_uses_the_seed_body(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    zoho_server.fail_next(PB + "/users")
    response = requests.get(zoho_server.url + PB + "/users", headers=auth(token), timeout=5)
    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL_ERROR"


def test_state_over_http(zoho_server: ZohoPhoneBridgeSandbox, token: str) -> None:
    state = requests.get(zoho_server.url + "/_sandbox/state", timeout=5).json()
    assert state["integrated"] is True
    assert state["call_activities"] == []
