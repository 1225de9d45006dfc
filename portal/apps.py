from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The project shell: management commands and checks that belong to no one app."""

    name = "portal"
    verbose_name = "Portal"
