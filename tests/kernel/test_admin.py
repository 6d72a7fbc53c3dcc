"""Operator console: staff only; every registered model's changelist and search work."""

import pytest
from django.contrib import admin
from django.urls import reverse

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def test_admin_is_staff_only(client, member):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(member.user)  # an organization owner, not staff
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_every_changelist_loads_and_searches(staff_client, model, member):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert staff_client.get(url).status_code == 200
    if admin.site._registry[model].search_fields:
        assert staff_client.get(url, {"q": "x"}).status_code == 200


def test_changelists_filter_by_organization(staff_client, member):
    url = reverse("admin:accounts_apikey_changelist")
    assert staff_client.get(url, {"organization__id__exact": str(member.organization.pk)}).status_code == 200


def test_revoke_action(staff_client, member):
    api_key, _ = api_key_create(
        organization=member.organization, created_by=member.user, creator_role="owner", name="to revoke"
    )
    url = reverse("admin:accounts_apikey_changelist")
    response = staff_client.post(url, {"action": "revoke", "_selected_action": [str(api_key.pk)]})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None


def test_apikey_changelist_query_count_is_constant(staff_client, member, django_assert_max_num_queries):
    for i in range(30):
        api_key_create(organization=member.organization, created_by=member.user, creator_role="owner", name=f"k{i}")
    with django_assert_max_num_queries(12):
        assert staff_client.get(reverse("admin:accounts_apikey_changelist")).status_code == 200
