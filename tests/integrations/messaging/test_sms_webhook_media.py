"""A Twilio-style signed MMS (numbered ``MediaUrl0..N`` form fields) posted by the SMS sandbox
to the running portal's /services/… endpoint stores each attachment once, in order."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from integrations.models import InboxEvent, Message
from integrations.sandbox.sms import twilio_inbound_params
from tests.factories import InstallationFactory
from tests.integrations.messaging.support import bound_number
from tests.integrations.portal.portal_support import approved_version

pytestmark = pytest.mark.django_db

TWILIO_SPEC = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "v11" / "twilio_sms.json"
AUTH_TOKEN = "twilio-auth-token-123"
TO = "+14155550171"
SENDER = "+14155550100"


@pytest.fixture
def twilio(live_server: Any, settings: Any, tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    # The portal checks the signature over the URL it believes it was called at.
    settings.PUBLIC_BASE_URL = live_server.url
    document = json.loads(TWILIO_SPEC.read_text())
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=approved_version(document, account=tenant_a.account),
        properties={"Base URL": sms_server.url},
        secret_properties={"Auth Token": AUTH_TOKEN},
    )
    bound_number(tenant_a.org, installation, TO, users=[tenant_a.pbx_user])
    return {
        "installation": installation,
        "url": f"{live_server.url}/services/{document['id']}/a{tenant_a.account.pk}",
    }


def test_signed_numbered_media_form_stores_each_attachment_once_in_order(
    twilio: dict[str, Any], sms_server: Any, tenant_a: Any
) -> None:
    media = [sms_server.media_url("sample.jpg"), sms_server.media_url("sample.pdf")]
    params = twilio_inbound_params(SENDER, TO, "look at these", media_urls=media)

    response = sms_server.post_signed_form(twilio["url"], params, AUTH_TOKEN)

    assert response.status_code == 202, response.text
    event = InboxEvent.objects.get()
    assert event.event_type == "mms"
    assert event.normalized["media_urls"] == media
    message = Message.objects.get()
    assert message.organization == tenant_a.org
    assert message.installation == twilio["installation"]
    assert message.content == "look at these"
    assert message.media_urls == media
    assert AUTH_TOKEN not in json.dumps(event.headers)


def test_signed_single_media_is_stored_once(twilio: dict[str, Any], sms_server: Any) -> None:
    media = [sms_server.media_url("sample.jpg")]
    params = twilio_inbound_params(SENDER, TO, "", media_urls=media)

    response = sms_server.post_signed_form(twilio["url"], params, AUTH_TOKEN)

    assert response.status_code == 202, response.text
    assert Message.objects.get().media_urls == media


def test_numbered_media_form_with_a_wrong_signature_is_401_and_nothing_is_stored(
    twilio: dict[str, Any], sms_server: Any
) -> None:
    params = twilio_inbound_params(SENDER, TO, "x", media_urls=[sms_server.media_url()])

    response = sms_server.post_signed_form(twilio["url"], params, "not-the-token")

    assert response.status_code == 401, response.text
    assert "not-the-token" not in response.text
    assert InboxEvent.objects.count() == 0
    assert Message.objects.count() == 0
