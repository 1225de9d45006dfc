"""Caller lookup: cold (every CRM asked) against cached answers.

Usage: ``python bench/lookup.py [--lookups N] [--crms K]``

Starts, on loopback only: a throwaway PostgreSQL database (SQLite if PostgreSQL is not
reachable) and the generic CRM sandbox in this process; configures an organization with K
active CRM installations (bearer API key, FindContact with a contact_url); uses the machine's
Redis (a dedicated db) as Django's cache when it is reachable (production's shape), else local
memory. Then times `integrations.lookup.caller_lookup` — the service behind
``GET /api/v1/organizations/<id>/lookup`` — in the same run:

* cold: the cache entries of the number are dropped first, so every CRM is asked (concurrently,
  each within LOOKUP_TIMEOUT_SECONDS) and the answer is cached;
* cached: the same number again, answered from the cache.

Rounds interleave cold and cached calls. The last line is

    RESULT lookup cold_p50_ms=… cached_p50_ms=… ratio=<cold p50 / cached p50>
                  cold_p99_ms=… cached_p99_ms=… db=… cache=…  (one line)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pipeline import (
    REDIS_URL,
    Portal,
    backend_tags,
    log,
    percentile,
    portal_env,
    redis_available,
    throwaway_database,
)

PHONES = ["+14155550100", "(415) 555-0142", "+14155550999"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lookups", type=int, default=200, help="cold and cached lookups each")
    parser.add_argument("--crms", type=int, default=2, help="CRM installations asked")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    cache_url = REDIS_URL if redis_available() else "locmemcache://bench"
    with throwaway_database() as database_url:
        env = portal_env(
            database_url,
            broker_url="",
            queue="unused",
            CACHE_URL=cache_url,
            LOG_LEVEL="WARNING",
        )
        Portal(env=env, queue="unused", broker_url="").setup()
        os.environ["CACHE_URL"] = cache_url
        from django.core.cache import cache
        from django.db import connections

        from integrations.lookup import caller_lookup, lookup_cache_invalidate
        from integrations.models import Installation, IntegrationSpec, SpecVersion
        from integrations.sandbox.generic_crm import GenericCrmSandbox
        from tenants.models import Account, Organization

        crm = GenericCrmSandbox(port=0).start()
        try:
            account = Account.objects.create(name="Bench Reseller", slug=f"bench-{run}")
            org = Organization.objects.create(
                account=account, name="Bench Org", slug=f"bench-org-{run}", pbx_domain="b.example"
            )
            installations = []
            for index in range(args.crms):
                document = {
                    "id": f"bench-lookup-{run}-{index}",
                    "name": f"Bench CRM {index}",
                    "class": "crm",
                    "properties": [
                        {"name": "Base URL", "type": "url", "required": True},
                        {"name": "API Key", "type": "secret", "required": True},
                    ],
                    "resource_url": "$Base URL$",
                    "contact_url": "$Base URL$/app/contacts/$contact_id$",
                    "authentication": {"type": "bearer", "token": "$API Key$"},
                    "API": {
                        "FindContact": {
                            "request_method": "GET",
                            "request_path": "/contacts/search",
                            "request_parameters": {"phone": "$phone$"},
                            "phone_formats": ["e164", "digits"],
                            "response_map": {
                                "records": [
                                    {
                                        "id": "$contact_id$",
                                        "name": "$contact_name$",
                                        "email": "$contact_email$",
                                    }
                                ]
                            },
                        }
                    },
                }
                spec = IntegrationSpec.objects.create(
                    spec_id=document["id"], name=document["name"], spec_class="crm"
                )
                version = SpecVersion.objects.create(
                    spec=spec,
                    number=1,
                    document=document,
                    sha256=SpecVersion.digest(document),
                    status=SpecVersion.Status.APPROVED,
                )
                installations.append(
                    Installation.objects.create(
                        organization=org,
                        spec_version=version,
                        properties={"Base URL": crm.url},
                        secret_properties={"API Key": crm.api_key},
                    )
                )
            log(f"# {args.crms} CRM(s), cache {cache_url}, database {database_url.split('@')[-1]}")

            def cold(phone: str) -> float:
                for installation in installations:
                    lookup_cache_invalidate(installation=installation, phone=phone)
                started = time.perf_counter()
                result = caller_lookup(organization=org, phone=phone)
                elapsed = (time.perf_counter() - started) * 1000
                assert all(s.status == "ok" for s in result.sources), result.sources
                return elapsed

            def cached(phone: str) -> float:
                started = time.perf_counter()
                result = caller_lookup(organization=org, phone=phone)
                elapsed = (time.perf_counter() - started) * 1000
                assert all(s.status == "cached" for s in result.sources), result.sources
                return elapsed

            for phone in PHONES:  # warm-up: connections, spec cache, imports
                cold(phone)
                cached(phone)
            cold_ms: list[float] = []
            cached_ms: list[float] = []
            for index in range(args.lookups):
                phone = PHONES[index % len(PHONES)]
                cold_ms.append(cold(phone))
                cached_ms.append(cached(phone))
        finally:
            crm.stop()
            for installation in Installation.objects.filter(organization__slug=f"bench-org-{run}"):
                for phone in PHONES:
                    lookup_cache_invalidate(installation=installation, phone=phone)
            cache.close()
            connections.close_all()
    tags = backend_tags(database_url, cache=cache_url)
    cold_p50, cached_p50 = percentile(cold_ms, 50), percentile(cached_ms, 50)
    ratio = cold_p50 / cached_p50 if cached_p50 else 0.0
    print(
        f"RESULT lookup cold_p50_ms={cold_p50:.2f} cached_p50_ms={cached_p50:.2f} "
        f"ratio={ratio:.1f} cold_p99_ms={percentile(cold_ms, 99):.2f} "
        f"cached_p99_ms={percentile(cached_ms, 99):.2f} {tags}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
