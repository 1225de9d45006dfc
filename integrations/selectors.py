"""Reads of integrations data. Every function takes the acting user and starts from a
`for_user` queryset, so a user of one reseller never reaches another's rows: a foreign id is
a 404 (`Http404`), looked up before anything else is done with it.

Visibility:
* specs — the built-in specs and the custom specs of the accounts the user belongs to;
* an organization's catalog — the built-in specs and its own account's custom specs that
  have an approved version (the latest approved version is the one enabled);
* installations — those of the organizations the user may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.templatetags.static import static

from integrations.engine.errors import SpecError
from integrations.engine.readiness import ReadinessReport, readiness_report
from integrations.engine.spec import Spec, load_spec
from integrations.models import Installation, IntegrationSpec, SpecVersion
from tenants.models import Organization

# Hand-made logos of the built-in specs: static/img/integrations/<spec id>.svg.
LOGO_STATIC_DIR = "img/integrations"


@lru_cache(maxsize=256)
def _loaded(version_id: int, sha256: str) -> Spec:
    version = SpecVersion.objects.only("document").get(pk=version_id)
    return load_spec(version.document)


def spec_version_load(version: SpecVersion) -> Spec:
    """The loaded spec of a stored version (cached per version and content digest).

    Raises SpecError if the stored document no longer validates (the engine grew stricter).
    """
    return _loaded(version.pk, version.sha256)


def spec_readiness(spec: Spec) -> ReadinessReport | None:
    """The App Connect readiness report of a `crm` spec; None for other classes."""
    if spec.spec_class != "crm":
        return None
    try:
        return readiness_report(spec)
    except SpecError:
        return None


def _static_logo_exists(spec_id: str) -> bool:
    for directory in getattr(settings, "STATICFILES_DIRS", []):
        if (Path(directory) / LOGO_STATIC_DIR / f"{spec_id}.svg").is_file():
            return True
    return False


def spec_logo_url(spec: IntegrationSpec) -> str:
    """Where the spec's logo is: our static file for built-ins, the spec's own `logo` for
    custom specs when it is an https URL or one of our static files; "" means "draw initials"."""
    if spec.is_builtin and _static_logo_exists(spec.spec_id):
        return static(f"{LOGO_STATIC_DIR}/{spec.spec_id}.svg")
    logo = spec.logo or ""
    if logo.startswith("https://") or logo.startswith(settings.STATIC_URL.rstrip("/") + "/"):
        return logo
    if logo.startswith("/static/"):
        return logo
    return ""


@dataclass
class CatalogEntry:
    """One card of an organization's catalog: a spec with its latest approved version."""

    spec: IntegrationSpec
    version: SpecVersion
    loaded: Spec
    readiness: ReadinessReport | None
    installed_count: int = 0

    @property
    def logo_url(self) -> str:
        return spec_logo_url(self.spec)

    @property
    def initials(self) -> str:
        words = [w for w in self.spec.name.replace("-", " ").split() if w]
        return "".join(w[0] for w in words[:2]).upper() or "?"

    @property
    def description(self) -> str:
        value = self.loaded.raw.get("description")
        return value if isinstance(value, str) else ""


def _visible_specs(user: Any) -> QuerySet[IntegrationSpec]:
    return IntegrationSpec.objects.for_user(user)


def spec_list(*, user: Any) -> QuerySet[IntegrationSpec]:
    """Every spec `user` may see (built-ins and their accounts' custom specs), with versions."""
    return (
        _visible_specs(user)
        .select_related("account")
        .prefetch_related(Prefetch("versions", queryset=SpecVersion.objects.order_by("-number")))
        .order_by("account_id", "name", "pk")
    )


def _is_staff_reviewer(user: Any) -> bool:
    return bool(
        getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
    )


def spec_get(*, user: Any, pk: int | str) -> IntegrationSpec:
    """The spec `pk` if `user` may see it (a built-in or one of their accounts'); 404 else.

    Platform staff review custom specs without belonging to their accounts: they may also
    read any spec with a version waiting for review (what the review page links to).
    Nobody else sees more than `for_user` gives.
    """
    visible = _visible_specs(user)
    if _is_staff_reviewer(user):
        waiting = IntegrationSpec.objects.filter(versions__status=SpecVersion.Status.SUBMITTED)
        visible = IntegrationSpec.objects.filter(
            Q(pk__in=visible.values("pk")) | Q(pk__in=waiting.values("pk"))
        )
    return get_object_or_404(visible.select_related("account"), pk=pk)


def spec_versions_visible(*, user: Any, spec: IntegrationSpec) -> QuerySet[SpecVersion]:
    """The versions of `spec` to list on its page: every version for the account's members,
    approved ones only for a built-in (nothing else exists for built-ins anyway)."""
    versions = spec.versions.select_related("uploaded_by", "reviewed_by").order_by("-number")
    if spec.is_builtin:
        return versions.filter(status=SpecVersion.Status.APPROVED)
    return versions


def _catalog_specs(*, user: Any, organization: Organization) -> QuerySet[IntegrationSpec]:
    return (
        _visible_specs(user)
        .filter(Q(account__isnull=True) | Q(account_id=organization.account_id))
        .filter(versions__status=SpecVersion.Status.APPROVED)
        .distinct()
    )


def catalog_for_organization(*, user: Any, organization: Organization) -> list[CatalogEntry]:
    """What `organization` can enable: built-in specs plus its account's custom specs that
    have an approved version, each with its latest approved version, CRMs first.

    `organization` must come from `tenants.selectors.organization_get` (already scoped).
    A spec whose stored document no longer loads is left out.
    """
    specs = _catalog_specs(user=user, organization=organization).order_by("spec_class", "name")
    counts = dict(
        Installation.objects.filter(organization=organization)
        .values("spec_version__spec")
        .annotate(n=Count("pk"))
        .values_list("spec_version__spec", "n")
    )
    entries = []
    for spec in specs:
        version = spec.latest_approved()
        if version is None:
            continue
        try:
            loaded = spec_version_load(version)
        except SpecError:
            continue
        entries.append(
            CatalogEntry(
                spec=spec,
                version=version,
                loaded=loaded,
                readiness=spec_readiness(loaded),
                installed_count=counts.get(spec.pk, 0),
            )
        )
    return entries


def catalog_entry_get(*, user: Any, organization: Organization, spec_pk: int | str) -> CatalogEntry:
    """The catalog entry of spec `spec_pk` for `organization`; 404 unless the organization
    may enable it (built-in, or its own account's spec with an approved version)."""
    spec = get_object_or_404(_catalog_specs(user=user, organization=organization), pk=spec_pk)
    version = spec.latest_approved()
    if version is None:  # pragma: no cover - the queryset requires one
        raise Http404("No approved version.")
    try:
        loaded = spec_version_load(version)
    except SpecError as exc:
        raise Http404("This spec no longer loads.") from exc
    return CatalogEntry(spec=spec, version=version, loaded=loaded, readiness=spec_readiness(loaded))


def spec_available_to_organization(*, spec: IntegrationSpec, organization: Organization) -> bool:
    """True when `organization` may enable `spec` (ignoring approval)."""
    return spec.account_id is None or spec.account_id == organization.account_id


def installation_list(*, user: Any, organization: Organization) -> QuerySet[Installation]:
    """The installations of `organization` that `user` may see, oldest first."""
    return (
        Installation.objects.for_user(user)
        .filter(organization=organization)
        .select_related("spec_version__spec", "organization")
        .order_by("created_at", "pk")
    )


def installation_get(*, user: Any, pk: int | str) -> Installation:
    """The installation `pk` if `user` may see its organization; 404 otherwise."""
    return get_object_or_404(
        Installation.objects.for_user(user).select_related(
            "spec_version__spec__account", "organization__account"
        ),
        pk=pk,
    )


def installation_upgrade_target(installation: Installation) -> SpecVersion | None:
    """The latest approved version of the installation's spec if newer than its own."""
    latest = installation.spec_version.spec.latest_approved()
    if latest is not None and latest.number > installation.spec_version.number:
        return latest
    return None


def spec_versions_for_review(*, user: Any) -> QuerySet[SpecVersion]:
    """Submitted custom spec versions waiting for platform staff (staff only; 404 else)."""
    if not getattr(user, "is_staff", False):
        raise Http404("Not found.")
    return (
        SpecVersion.objects.filter(status=SpecVersion.Status.SUBMITTED)
        .select_related("spec__account", "uploaded_by")
        .order_by("created_at", "pk")
    )


def spec_version_get_for_review(*, user: Any, pk: int | str) -> SpecVersion:
    """A spec version for staff review; 404 for anyone who is not staff."""
    if not getattr(user, "is_staff", False):
        raise Http404("Not found.")
    return get_object_or_404(SpecVersion.objects.select_related("spec__account"), pk=pk)
