import io

from django.core.management import call_command

from tenants.models import Account, Membership, Organization, PbxUser, SmsNumber


def _counts() -> tuple[int, ...]:
    return (
        Account.objects.count(),
        Organization.objects.count(),
        PbxUser.objects.count(),
        SmsNumber.objects.count(),
        Membership.objects.count(),
    )


def test_seed_demo_creates_a_reseller_with_two_orgs_and_is_idempotent(db, client):
    call_command("seed_demo", stdout=io.StringIO())
    first = _counts()
    call_command("seed_demo", stdout=io.StringIO())

    assert _counts() == first
    account = Account.objects.get(slug="demo-reseller")
    assert account.organizations.count() == 2
    assert PbxUser.objects.filter(organization__account=account).count() >= 4
    assert set(SmsNumber.objects.values_list("number", flat=True)) == {
        "+14155550199",
        "+442079460018",
    }
    assert client.login(username="demo", password="demo-patchbay")
