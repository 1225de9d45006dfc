"""`manage.py create_reseller`: a real reseller account and its first admin login."""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.services import reseller_create


class Command(BaseCommand):
    help = (
        "Create a reseller account and a portal login that administers it (all its "
        "organizations). Run it again with the same --account-slug to add another admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="The reseller's name.")
        parser.add_argument(
            "--account-slug", default="", help="Defaults to one made from --account."
        )
        parser.add_argument("--username", required=True, help="The admin's portal login.")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-env",
            metavar="VARIABLE",
            default="",
            help="Read the password from this environment variable (no prompt); "
            "otherwise it is asked for twice.",
        )

    def _password(self, options: dict[str, Any]) -> str:
        if options["password_env"]:
            password = os.environ.get(options["password_env"], "")
            if not password:
                raise CommandError(
                    f"The environment variable {options['password_env']} is empty or unset; "
                    "set it to the password, or leave out --password-env to be asked."
                )
            return password
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise CommandError("The two passwords differ; run the command again.")
        return password

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            membership = reseller_create(
                account_name=options["account"],
                account_slug=options["account_slug"],
                username=options["username"],
                email=options["email"],
                password=self._password(options),
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise CommandError(f"Nothing was created. {problems}") from exc
        account = membership.account
        self.stdout.write(
            self.style.SUCCESS(
                f"{membership.user.username} is now reseller admin of {account.name} "
                f"({account.slug})."
            )
        )
        self.stdout.write(f"  Log in at {settings.PUBLIC_BASE_URL}/login/")
