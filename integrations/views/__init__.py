"""Web UI of integrations, one module per area (catalog, installations, OAuth, user mapping,
SMS numbers, delivery log). Every view reads tenant data through `integrations.selectors`."""
