"""The generic CRM sandbox: auth, contacts, activities, recordings and query endpoints."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse

import pytest
import requests

from integrations.sandbox.generic_crm import (
    DEFAULT_API_KEY,
    DEFAULT_BASIC_PASSWORD,
    DEFAULT_BASIC_USER,
    GenericCrmSandbox,
)
from integrations.sandbox.queries import (
    QuerySyntaxError,
    odata_parse_filter,
    odata_quote,
    soql_parse,
    soql_quote,
)

REDIRECT = "http://127.0.0.1:9/cb"
KEY = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


def oauth_code(server: GenericCrmSandbox) -> str:
    page = requests.get(
        server.url + "/oauth/authorize",
        params={
            "client_id": server.client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "state": "xyz",
            "scope": "contacts activities",
        },
        timeout=5,
    )
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    decided = requests.post(
        server.url + "/oauth/authorize",
        data={**fields, "decision": "accept"},
        allow_redirects=False,
        timeout=5,
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(decided.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


def token_request(server: GenericCrmSandbox, **data: str) -> requests.Response:
    return requests.post(server.url + "/oauth/token", data=data, timeout=5)


# -- auth --------------------------------------------------------------------------------


def test_oauth_flow_returns_instance_url_and_tokens(crm_server: GenericCrmSandbox) -> None:
    response = token_request(
        crm_server,
        grant_type="authorization_code",
        code=oauth_code(crm_server),
        redirect_uri=REDIRECT,
        client_id=crm_server.client_id,
        client_secret=crm_server.client_secret,
    )
    body = response.json()
    assert body["instance_url"] == crm_server.url
    assert body["token_type"] == "Bearer"
    me = requests.get(
        crm_server.url + "/me",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=5,
    )
    assert me.json()["email"] == "alice@crm.example"


def test_client_credentials_in_basic_header(crm_server: GenericCrmSandbox) -> None:
    response = requests.post(
        crm_server.url + "/oauth/token",
        data={"grant_type": "authorization_code", "code": oauth_code(crm_server)},
        auth=(crm_server.client_id, crm_server.client_secret),
        timeout=5,
    )
    assert "access_token" in response.json()


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "nope"}, 401, "invalid_client"),
        ({"code": "nope"}, 400, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:9/other"}, 400, "invalid_grant"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_errors_follow_rfc_6749(
    crm_server: GenericCrmSandbox, overrides: dict, status: int, error: str
) -> None:
    data = {
        "grant_type": "authorization_code",
        "code": oauth_code(crm_server),
        "redirect_uri": REDIRECT,
        "client_id": crm_server.client_id,
        "client_secret": crm_server.client_secret,
        **overrides,
    }
    response = token_request(crm_server, **data)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_token_expiry_then_refresh(crm_server: GenericCrmSandbox) -> None:
    crm_server.configure(token_lifetime=10)
    tokens = crm_server.issue_tokens()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(crm_server.url + "/users", headers=headers, timeout=5).ok
    crm_server.advance_clock(11)
    expired = requests.get(crm_server.url + "/users", headers=headers, timeout=5)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_expired"
    refreshed = token_request(
        crm_server,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        client_id=crm_server.client_id,
        client_secret=crm_server.client_secret,
    ).json()
    assert refreshed["instance_url"] == crm_server.url
    new = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert requests.get(crm_server.url + "/users", headers=new, timeout=5).ok


def test_revoke_logs_out(crm_server: GenericCrmSandbox) -> None:
    tokens = crm_server.issue_tokens()
    requests.post(
        crm_server.url + "/oauth/revoke", data={"token": tokens["refresh_token"]}, timeout=5
    )
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(crm_server.url + "/me", headers=headers, timeout=5).status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "ok"),
    [
        ({"headers": KEY}, True),
        ({"headers": {"X-API-Key": DEFAULT_API_KEY}}, True),
        ({"auth": (DEFAULT_BASIC_USER, DEFAULT_BASIC_PASSWORD)}, True),
        ({"auth": (DEFAULT_BASIC_USER, "wrong")}, False),
        ({"headers": {"Authorization": "Bearer wrong"}}, False),
        ({}, False),
    ],
)
def test_api_key_and_basic_auth(crm_server: GenericCrmSandbox, kwargs: dict, ok: bool) -> None:
    response = requests.get(crm_server.url + "/users", timeout=5, **kwargs)
    assert response.ok is ok
    if not ok:
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_required_headers(crm_server: GenericCrmSandbox) -> None:
    crm_server.configure(required_headers={"X-Api-Version": "2024-01"})
    missing = requests.get(crm_server.url + "/users", headers=KEY, timeout=5)
    assert missing.status_code == 400
    assert missing.json()["error"]["field"] == "X-Api-Version"
    ok = requests.get(
        crm_server.url + "/users", headers={**KEY, "X-Api-Version": "2024-01"}, timeout=5
    )
    assert ok.ok


# -- users, contacts, accounts -------------------------------------------------------------


def test_users_have_emails(crm_server: GenericCrmSandbox) -> None:
    users = requests.get(crm_server.url + "/users", headers=KEY, timeout=5)
    assert users.headers["X-Total-Count"] == "4"
    assert users.json()["records"][0]["email"] == "alice@crm.example"
    active = requests.get(crm_server.url + "/users?active=true", headers=KEY, timeout=5).json()
    assert len(active["records"]) == 3


def test_contacts_limit(crm_server: GenericCrmSandbox) -> None:
    page = requests.get(crm_server.url + "/contacts?limit=3", headers=KEY, timeout=5).json()
    assert len(page["records"]) == 3
    assert page["total"] == 8
    for bad in ("0", "abc", "1000"):
        response = requests.get(crm_server.url + f"/contacts?limit={bad}", headers=KEY, timeout=5)
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "limit"


@pytest.mark.parametrize(
    ("phone", "contact_ids"),
    [
        ("+14155550100", ["c-1"]),  # e164
        ("(415) 555-0123", ["c-2"]),  # national
        ("4155550144", ["c-3"]),  # national digits
        ("14155550155", ["c-4"]),  # digits
        ("+44 20 7946 0958", ["c-5"]),  # international
        ("415-555-0189", ["c-8"]),  # on the mobile field
        ("+14155550177", ["c-6", "c-7"]),  # two matches
        ("4155550100", []),  # exact string only: Jane is stored in E.164
        ("+14155550123", []),
    ],
)
def test_phone_search_is_exact(
    crm_server: GenericCrmSandbox, phone: str, contact_ids: list[str]
) -> None:
    response = requests.get(
        crm_server.url + "/contacts/search", params={"phone": phone}, headers=KEY, timeout=5
    )
    assert [c["id"] for c in response.json()["records"]] == contact_ids


def test_name_search_and_missing_parameter(crm_server: GenericCrmSandbox) -> None:
    found = requests.get(
        crm_server.url + "/contacts/search", params={"q": "twin"}, headers=KEY, timeout=5
    )
    assert {c["name"] for c in found.json()["records"]} == {"Sam Twin", "Sally Twin"}
    missing = requests.get(crm_server.url + "/contacts/search", headers=KEY, timeout=5)
    assert missing.status_code == 400
    assert missing.json()["error"]["field"] == "phone"


def test_contact_create_update_delete(crm_server: GenericCrmSandbox) -> None:
    created = requests.post(
        crm_server.url + "/contacts",
        json={"first_name": "New", "last_name": "Caller", "phone": "+15555550100"},
        headers=KEY,
        timeout=5,
    )
    assert created.status_code == 201
    contact_id = created.json()["id"]
    assert created.headers["Location"] == f"/contacts/{contact_id}"
    updated = requests.patch(
        crm_server.url + f"/contacts/{contact_id}",
        json={"email": "new@example.com"},
        headers=KEY,
        timeout=5,
    )
    assert updated.json()["email"] == "new@example.com"
    put = requests.put(
        crm_server.url + f"/contacts/{contact_id}",
        data={"company": "Form Co"},
        headers=KEY,
        timeout=5,
    )
    assert put.json()["company"] == "Form Co"
    assert (
        requests.delete(
            crm_server.url + f"/contacts/{contact_id}", headers=KEY, timeout=5
        ).status_code
        == 204
    )
    gone = requests.get(crm_server.url + f"/contacts/{contact_id}", headers=KEY, timeout=5)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"first_name": "No last"}, 400, "last_name"),
        ({"last_name": "X", "email": "not-an-email"}, 400, "email"),
        ({"last_name": "X", "account_id": "a-999"}, 400, "account_id"),
        ({"last_name": "X", "favourite_colour": "blue"}, 400, "favourite_colour"),
        ({"last_name": "X", "email": "jane.doe@acme.example"}, 409, "email"),
    ],
)
def test_contact_validation_names_the_field(
    crm_server: GenericCrmSandbox, body: dict, status: int, field: str
) -> None:
    response = requests.post(crm_server.url + "/contacts", json=body, headers=KEY, timeout=5)
    assert response.status_code == status
    assert response.json()["error"]["field"] == field


def test_non_json_body_is_400(crm_server: GenericCrmSandbox) -> None:
    response = requests.post(
        crm_server.url + "/contacts",
        data="{not json",
        headers={**KEY, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"


def test_account_find_or_create(crm_server: GenericCrmSandbox) -> None:
    found = requests.get(
        crm_server.url + "/accounts/search", params={"name": "acme corp"}, headers=KEY, timeout=5
    )
    assert found.json()["records"][0]["id"] == "a-1"
    created = requests.post(
        crm_server.url + "/accounts", json={"name": "Newco"}, headers=KEY, timeout=5
    )
    assert created.status_code == 201
    duplicate = requests.post(
        crm_server.url + "/accounts", json={"name": "NEWCO"}, headers=KEY, timeout=5
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["existing_id"] == created.json()["id"]
    assert (
        len(requests.get(crm_server.url + "/accounts", headers=KEY, timeout=5).json()["records"])
        == 4
    )


# -- activities ----------------------------------------------------------------------------


def create_activity(server: GenericCrmSandbox, **fields) -> requests.Response:
    body = {"type": "call", "subject": "Inbound call", "call_id": "call-1", **fields}
    return requests.post(server.url + "/activities", json=body, headers=KEY, timeout=5)


def test_activity_lifecycle(crm_server: GenericCrmSandbox) -> None:
    created = create_activity(
        crm_server, contact_id="c-1", duration=30, start="2025-01-02T03:04:05Z"
    )
    assert created.status_code == 201
    activity = created.json()
    assert created.headers["Location"] == f"/activities/{activity['id']}"
    assert created.headers["X-Request-Id"]
    assert activity["version"] == 1

    updated = requests.put(
        crm_server.url + f"/activities/{activity['id']}",
        json={"duration": 95, "notes": "done", "version": 1},
        headers=KEY,
        timeout=5,
    )
    assert updated.json()["version"] == 2
    stale = requests.put(
        crm_server.url + f"/activities/{activity['id']}",
        json={"notes": "overwrite", "version": 1},
        headers=KEY,
        timeout=5,
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"

    status = requests.patch(
        crm_server.url + f"/activities/{activity['id']}/status",
        json={"status": "completed", "disposition": "Sale"},
        headers=KEY,
        timeout=5,
    )
    assert status.json()["status"] == "completed"
    read = requests.get(crm_server.url + f"/activities/{activity['id']}", headers=KEY, timeout=5)
    assert read.json()["notes"] == "done"
    assert read.json()["disposition"] == "Sale"
    assert len(crm_server.activities_for_call("call-1")) == 1
    listed = requests.get(crm_server.url + "/activities?call_id=call-1", headers=KEY, timeout=5)
    assert [a["id"] for a in listed.json()["records"]] == [activity["id"]]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "fax"}, "type"),
        ({"subject": ""}, "subject"),
        ({"contact_id": "c-999"}, "contact_id"),
        ({"duration": "1.5"}, "duration"),
        ({"start": "yesterday"}, "start"),
        ({"direction": "up"}, "direction"),
    ],
)
def test_activity_validation(crm_server: GenericCrmSandbox, fields: dict, field: str) -> None:
    response = create_activity(crm_server, **fields)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_activity_not_found(crm_server: GenericCrmSandbox) -> None:
    response = requests.get(crm_server.url + "/activities/act-0", headers=KEY, timeout=5)
    assert response.status_code == 404


def test_recording_upload_is_received_whole(crm_server: GenericCrmSandbox) -> None:
    activity_id = create_activity(crm_server).json()["id"]
    content = os.urandom(2 * 1024 * 1024)
    response = requests.post(
        crm_server.url + f"/activities/{activity_id}/recording",
        files={
            "file": ("call-1.mp3", content, "audio/mpeg"),
            "metadata": (None, '{"duration": 30}', "application/json"),
        },
        headers=KEY,
        timeout=30,
    )
    assert response.status_code == 201
    recording = response.json()
    assert recording["filename"] == "call-1.mp3"
    assert recording["size"] == len(content)
    assert recording["sha256"] == hashlib.sha256(content).hexdigest()
    assert recording["content_type"] == "audio/mpeg"
    assert recording["fields"] == {"metadata": '{"duration": 30}'}
    stored = crm_server.activities[activity_id]["recordings"][0]
    assert stored["size"] == len(content)


def test_recording_without_file_part_is_400(crm_server: GenericCrmSandbox) -> None:
    activity_id = create_activity(crm_server).json()["id"]
    response = requests.post(
        crm_server.url + f"/activities/{activity_id}/recording",
        files={"other": ("x.txt", b"x")},
        headers=KEY,
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "file"


def test_injected_failures_use_the_crm_error_shape(crm_server: GenericCrmSandbox) -> None:
    crm_server.fail_next("/activities", status=500)
    crm_server.rate_limit_next("/activities", retry_after=30)
    failed = create_activity(crm_server)
    limited = create_activity(crm_server)
    assert failed.status_code == 500
    assert "error" in failed.json()
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "30"
    assert create_activity(crm_server).status_code == 201
    assert len(crm_server.activities_for_call("call-1")) == 1


# -- OData, SOQL, filter groups ------------------------------------------------------------


def test_odata_filter_with_doubled_quote(crm_server: GenericCrmSandbox) -> None:
    response = requests.get(
        crm_server.url + "/odata/Contacts",
        params={"$filter": "LastName eq " + odata_quote("O'Brien"), "$select": "Id,FullName"},
        headers=KEY,
        timeout=5,
    )
    assert response.json()["value"] == [{"Id": "c-8", "FullName": "Pat O'Brien"}]


def test_odata_phone_filter_and_top(crm_server: GenericCrmSandbox) -> None:
    response = requests.get(
        crm_server.url + "/odata/Contacts",
        params={"$filter": "Phone eq '+14155550177' or Phone eq '+14155550100'", "$top": "2"},
        headers=KEY,
        timeout=5,
    )
    assert sorted(r["Id"] for r in response.json()["value"]) == ["c-1", "c-6"]


def test_odata_bad_filter_is_400(crm_server: GenericCrmSandbox) -> None:
    response = requests.get(
        crm_server.url + "/odata/Contacts",
        params={"$filter": "LastName eq 'O'Brien'"},
        headers=KEY,
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_soql_query_by_phone(crm_server: GenericCrmSandbox) -> None:
    response = requests.get(
        crm_server.url + "/query",
        params={"q": "SELECT Id, Name FROM Contact WHERE Phone = '+14155550100'"},
        headers=KEY,
        timeout=5,
    )
    assert response.json() == {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {
                    "type": "Contact",
                    "url": "/services/data/v59.0/sobjects/Contact/c-1",
                },
                "Id": "c-1",
                "Name": "Jane Doe",
            }
        ],
    }


def test_soql_escaped_quote_matches_and_unescaped_is_malformed(
    crm_server: GenericCrmSandbox,
) -> None:
    escaped = requests.get(
        crm_server.url + "/services/data/v60.0/query",
        params={"q": "SELECT Id FROM Contact WHERE LastName = 'O\\'Brien'"},
        headers=KEY,
        timeout=5,
    )
    assert [r["Id"] for r in escaped.json()["records"]] == ["c-8"]
    assert escaped.json()["records"][0]["attributes"]["url"].startswith("/services/data/v60.0/")
    unescaped = requests.get(
        crm_server.url + "/query",
        params={"q": "SELECT Id FROM Contact WHERE LastName = 'O'Brien'"},
        headers=KEY,
        timeout=5,
    )
    assert unescaped.status_code == 400
    assert unescaped.json()["error"]["code"] == "MALFORMED_QUERY"


def test_search_filter_groups(crm_server: GenericCrmSandbox) -> None:
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+14155550100"}]},
            {
                "filters": [
                    {"propertyName": "mobilephone", "operator": "EQ", "value": "415-555-0189"}
                ]
            },
        ],
        "properties": ["firstname", "lastname", "phone"],
    }
    response = requests.post(crm_server.url + "/search", json=body, headers=KEY, timeout=5)
    results = response.json()["results"]
    assert response.json()["total"] == 2
    assert [r["id"] for r in results] == ["c-1", "c-8"]
    assert results[0]["properties"] == {
        "firstname": "Jane",
        "lastname": "Doe",
        "phone": "+14155550100",
    }


def test_search_filters_in_a_group_are_anded(crm_server: GenericCrmSandbox) -> None:
    body = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "phone", "operator": "EQ", "value": "+14155550177"},
                    {"propertyName": "firstname", "operator": "EQ", "value": "sally"},
                ]
            }
        ]
    }
    response = requests.post(crm_server.url + "/search", json=body, headers=KEY, timeout=5)
    assert [r["id"] for r in response.json()["results"]] == ["c-7"]


def test_search_validation_names_the_filter(crm_server: GenericCrmSandbox) -> None:
    body = {
        "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "LIKE", "value": "x"}]}]
    }
    response = requests.post(crm_server.url + "/search", json=body, headers=KEY, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "filterGroups[0].filters[0].operator"


# -- the parsers on their own ----------------------------------------------------------------

CONTACT_FIELDS = {"Contact": {"id", "name", "lastname", "phone"}}


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'O\\'Brien'", "O'Brien"),
        ("'say \\\"hi\\\"'", 'say "hi"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'line\\nbreak'", "line\nbreak"),
        ("'\\u00e9t\\u00e9'", "été"),
    ],
)
def test_soql_literal_escapes(literal: str, value: str) -> None:
    query = soql_parse(f"SELECT Id FROM Contact WHERE Name = {literal}", CONTACT_FIELDS)
    assert query.where is not None
    assert query.where({"Name": value})
    assert not query.where({"Name": value + "x"})


@pytest.mark.parametrize("value", ["O'Brien", "a\\b", 'it\'s "quoted"', "new\nline", "100% _sure_"])
def test_soql_quote_round_trips(value: str) -> None:
    query = soql_parse(f"SELECT Id FROM Contact WHERE Name = {soql_quote(value)}", CONTACT_FIELDS)
    assert query.where is not None and query.where({"Name": value})


def test_soql_like_and_escaped_wildcards() -> None:
    like = soql_parse("SELECT Id FROM Contact WHERE Name LIKE 'O\\'B%'", CONTACT_FIELDS)
    assert like.where is not None and like.where({"Name": "O'Brien"})
    literal = soql_parse("SELECT Id FROM Contact WHERE Name LIKE '100\\%'", CONTACT_FIELDS)
    assert literal.where is not None
    assert literal.where({"Name": "100%"}) and not literal.where({"Name": "1000"})


@pytest.mark.parametrize(
    "query",
    [
        "SELECT Id FROM Contact WHERE Name = 'O'Brien'",
        "SELECT Id FROM Contact WHERE Name = 'unterminated",
        "SELECT Id FROM Contact WHERE Name = 'bad \\q escape'",
        "SELECT Id FROM Lead",
        "SELECT Nope FROM Contact",
        "SELECT Id FROM Contact WHERE Name = 'a' LIMIT x",
        "SELECT Id Contact",
    ],
)
def test_soql_malformed(query: str) -> None:
    with pytest.raises(QuerySyntaxError):
        soql_parse(query, CONTACT_FIELDS)


def test_soql_and_or_precedence_and_limit() -> None:
    query = soql_parse(
        "SELECT Id FROM Contact WHERE Name = 'a' OR Name = 'b' AND Phone = '1' LIMIT 5",
        CONTACT_FIELDS,
    )
    assert query.limit == 5
    assert query.where is not None
    assert query.where({"Name": "a", "Phone": "9"})
    assert not query.where({"Name": "b", "Phone": "9"})
    assert query.where({"Name": "b", "Phone": "1"})


def test_odata_parser() -> None:
    predicate = odata_parse_filter(
        "(contains(LastName,'brien') and not Phone eq '1') or startswith(FirstName,'Sa')",
        {"lastname", "phone", "firstname"},
    )
    assert predicate({"LastName": "O'Brien", "Phone": "2", "FirstName": "Pat"})
    assert not predicate({"LastName": "O'Brien", "Phone": "1", "FirstName": "Pat"})
    assert predicate({"LastName": "Twin", "Phone": "1", "FirstName": "Sally"})
    with pytest.raises(QuerySyntaxError):
        odata_parse_filter("Unknown eq 'x'", {"phone"})
