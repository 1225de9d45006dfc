"""Examples copied verbatim from the seed documents (shared/seeds/ringotel-*.txt).

Kept as JSON text exactly as the seeds print them, so the tests prove the engine reads the
documented format as written.
"""

# The seed lines are kept verbatim, one per constant, so they can be compared with the seeds.
# ruff: noqa: E501

from __future__ import annotations

import json
from typing import Any

# ringotel-crm-json-framework.txt
CRM_PROPERTIES = '"properties":[ "Instance URL", "Client ID", "Client Secret" ]'
CRM_PARAMETERS = (
    '"parameters": { "user_id": "number", "user_name": "string", "contact_id": "number" }'
)
CRM_USERS_RESPONSE_MAP = (
    '"response_map": { "records": [ { "Id": "$user_id$", "Name": "$user_name$" } ] }'
)

# ringotel-sms-json-framework.txt (the API block ends with a comma in the seed: it is a fragment)
SMS_API_BLOCK = '"API": { "SendMessage": { "request_method": "POST", "request_url": "https://api.example.com/webhook", "request_content_type": "application/json", "request_parameters": { "from": "$from$", "to": "$to$", "extension": "$extension$", "domain": "$domain$", "content": "$content$" }, "response_map": { "data": { "id": "$messageid$" } } }, "SendFile": { "request_method": "POST", "request_url": "https://api.example.com/webhook", "request_content_type": "application/json", "request_parameters": { "from": "$from$", "to": "$to$", "extension": "$extension$", "domain": "$domain$", "media_url": "$content$" }, "response_map": { "data": { "id": "$messageid$" } } } },'

WEBHOOK_MESSAGE_MODEL = '{ "event_key": "message", "event_type": "message", "request_method": "POST", "request_parameters": { "method": "$event_key$", "params":{ "from": "$from$", "to": "$to$", "content": "$content$" } } }'
WEBHOOK_MESSAGE_BODY = '{ "method": "message", "params":{ "from": "+61855555555", "to": "+61123456789", "content": "Hello there!" } }'
WEBHOOK_FILE_MODEL = '{ "event_key": "file", "event_type": "mms", "request_method": "POST", "request_parameters": { "method": "$event_key$", "params":{ "from": "$from$", "to": "$to$", "text": "$text$", "url":"$url$" } } }'
WEBHOOK_FILE_BODY = '{ "method": "file", "params":{ "from": "+61855555555", "to": "+61123456789", "text": "Sending a file", "url":"https://your.server.com/files/8a8d89798as9ud.jpeg" } }'


def fragment(text: str) -> dict[str, Any]:
    """Parse a `"key": value` fragment (as printed in the seeds) into a dict."""
    return json.loads("{" + text.rstrip().rstrip(",") + "}")


def crm_seed_spec_text() -> str:
    """A complete crm spec assembled from the seed fragments, verbatim."""
    return (
        '{ "id": "ExampleCRM", "name": "Example CRM", "logo": "", "class":"crm", '
        '"resource_url": "$Instance URL$/api", '
        f"{CRM_PROPERTIES}, {CRM_PARAMETERS}, "
        '"authentication": {"type": "oauth2", "authorize_url": "$Instance URL$/oauth/authorize",'
        ' "token_url": "$Instance URL$/oauth/token", "client_id": "$Client ID$",'
        ' "client_secret": "$Client Secret$"}, '
        '"API": { "Users": { "request_method": "GET", "request_path": "/users", '
        f"{CRM_USERS_RESPONSE_MAP} }}, "
        '"FindContact": { "request_method": "GET", "request_path": "/contacts", '
        '"request_parameters": {"phone": "$phone$"}, '
        '"response_map": { "records": [ { "Id": "$contact_id$", "Name": "$contact_name$" } ] } },'
        '"DeleteContact": { "request_method": "DELETE", "request_path": "/contacts/$contact_id$" }'
        " } }"
    )


def sms_seed_spec_text() -> str:
    """A complete sms spec: the seed's API block and both Webhook models, verbatim."""
    return (
        '{ "id": "ExampleSMS", "name": "Example SMS", "logo": "", "class": "sms", '
        f"{SMS_API_BLOCK} "
        f'"Webhook": [ {WEBHOOK_MESSAGE_MODEL}, {WEBHOOK_FILE_MODEL} ] }}'
    )
