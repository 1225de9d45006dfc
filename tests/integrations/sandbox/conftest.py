"""The sandbox fixtures, re-exported for the sandbox's own tests."""

from integrations.sandbox.pytest_fixtures import (  # noqa: F401
    crm_server,
    ringrx_server,
    sms_server,
    zoho_server,
)
