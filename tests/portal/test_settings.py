"""Settings as a fresh clone and a production server see them: each case imports
`portal.settings` (or runs `manage.py`) in a subprocess with a controlled environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PRINT_KEYS = (
    "import portal.settings as s; print('SECRET_KEY=' + s.SECRET_KEY); "
    "print('FIELD_ENCRYPTION_KEYS=' + ','.join(s.FIELD_ENCRYPTION_KEYS))"
)


@pytest.fixture(autouse=True)
def _no_dotenv() -> None:
    if (ROOT / ".env").exists():
        pytest.skip("a .env file next to manage.py would feed these subprocesses its values")


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` in the project folder with only `env` (plus PATH) set."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    return _run(["-c", PRINT_KEYS], **env)


def test_production_without_secret_key_refuses_to_start_and_says_how_to_make_one() -> None:
    result = _import_settings(DEBUG="false", FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode())

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr
    assert "SECRET_KEY=" not in result.stdout


def test_debug_unset_counts_as_production() -> None:
    result = _import_settings()

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_without_encryption_keys_refuses_to_start_and_says_how_to_make_one() -> None:
    result = _import_settings(DEBUG="false", SECRET_KEY="a-real-production-secret-key-0123456789")

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr


def test_production_with_both_keys_uses_them() -> None:
    key = Fernet.generate_key().decode()

    result = _import_settings(
        DEBUG="false",
        SECRET_KEY="a-real-production-secret-key-0123456789",
        FIELD_ENCRYPTION_KEYS=key,
    )

    assert result.returncode == 0, result.stderr
    assert "SECRET_KEY=a-real-production-secret-key-0123456789" in result.stdout
    assert f"FIELD_ENCRYPTION_KEYS={key}" in result.stdout


def test_local_debug_mode_still_starts_without_any_key() -> None:
    """`make run` (DEBUG=true) on a fresh clone needs no configuration."""
    result = _import_settings(DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert "SECRET_KEY=patchbay-insecure-local-development-key-change-me" in result.stdout


def test_migrate_creates_the_folder_of_a_new_sqlite_database(tmp_path: Path) -> None:
    """A fresh clone has no var/: `manage.py migrate` must not fail "unable to open database
    file"."""
    database = tmp_path / "var-of-a-fresh-clone" / "patchbay.sqlite3"

    result = _run(
        ["manage.py", "migrate", "--no-input", "-v0"],
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{database}",
    )

    assert result.returncode == 0, result.stderr
    assert database.is_file()


def test_collected_static_files_are_served_without_debug(tmp_path: Path, settings) -> None:
    """Production (DEBUG off, gunicorn) serves what `manage.py collectstatic` collected."""
    settings.STATIC_ROOT = str(tmp_path / "staticfiles")
    call_command("collectstatic", "--no-input", verbosity=0)

    response = Client().get("/static/css/portal.css")

    assert not django_settings.DEBUG
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == (ROOT / "static" / "css" / "portal.css").read_bytes()


def test_api_docs_load_swagger_ui_from_this_server_not_a_cdn(db, client, tmp_path, settings):
    settings.STATIC_ROOT = str(tmp_path / "staticfiles")
    call_command("collectstatic", "--no-input", verbosity=0)

    page = client.get("/api/docs/").content.decode()

    assert "cdn.jsdelivr.net" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    bundle = Client().get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert bundle.status_code == 200
