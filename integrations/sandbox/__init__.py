"""Local HTTP servers that imitate the third parties Patchbay talks to.

For tests, demos and spec authors. Every server binds loopback only and never connects
anywhere but loopback. Pure standard library + ``requests`` (+ ``cryptography`` for Ed25519);
no Django here (the ``manage.py sandbox`` command lives in ``integrations/management``).

==========  ===========================================  ===========================
module      imitates                                     default port (``run_all``)
==========  ===========================================  ===========================
zoho        Zoho CRM PhoneBridge + Zoho Accounts OAuth   8101
ringrx      RingRx: JWT auth/token + refresh, SMS,       8102
            callbacks to a URL
generic_crm a REST CRM covering spec language v1/v1.1    8103
sms         the seed's SMS/MMS provider template         8104
recorder    a catch-all receiver (tests only)            —
==========  ===========================================  ===========================

Start them all with ``python manage.py sandbox`` or ``python -m integrations.sandbox``; in
tests use the fixtures of :mod:`integrations.sandbox.pytest_fixtures`. Every server has an
admin API under ``/_sandbox/`` (see :mod:`integrations.sandbox.base`).
"""
