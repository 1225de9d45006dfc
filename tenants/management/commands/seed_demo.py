from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from tenants.demo import DEMO_ORG_ADMIN_USERNAME, DEMO_PASSWORD, DEMO_USERNAME, demo_seed


class Command(BaseCommand):
    help = "Create the demo reseller, two organizations, PBX users, SMS numbers and logins."

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed()
        verb = "Created" if result.created else "Demo data already present; checked"
        self.stdout.write(self.style.SUCCESS(f"{verb}: {result.account.name}"))
        self.stdout.write(f"  Portal:           {settings.PUBLIC_BASE_URL}/")
        self.stdout.write(f"  Reseller login:   {DEMO_USERNAME} / {DEMO_PASSWORD}")
        self.stdout.write(f"  Org admin login:  {DEMO_ORG_ADMIN_USERNAME} / {DEMO_PASSWORD}")
