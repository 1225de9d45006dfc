"""Inbound webhooks: one module per sender, on a shared base view.

* `base` — `WebhookView` (read the raw body, authenticate, validate, store, answer) and the
  authentication helpers (shared secret, Standard Webhooks signatures);
* `pbx` — ``POST /api/v1/hooks/pbx/<org key>/<event>``: the normalized ``call`` event and
  RingRx's callback types.

Routes live in `integrations.webhook_urls`, mounted at ``api/v1/hooks/``. What happens to a
stored event is decided by the handlers registered in `integrations.inbox`.
"""
