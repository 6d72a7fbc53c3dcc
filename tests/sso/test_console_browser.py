"""Signing into the operator console through the OIDC provider, in Debian's headless chromium
(Playwright, no browser download): platform → IdP login form → callback → admin session."""

from __future__ import annotations

import pytest

from apps.accounts.models import Membership, User
from apps.sso import services
from tests.console.test_dashboard_browser import ARTIFACTS, CHROMIUM, _browser_or_skip
from tests.sso.conftest import CLIENT_ID, CLIENT_SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_operator_signs_into_the_admin_console_through_oidc(oidc_idp, kai_server, member, monkeypatch):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    connection = services.connection_create(
        organization=member.organization,
        actor=member.user,
        data={
            "protocol": "oidc",
            "issuer_url": oidc_idp.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "allowed_domains": ["acme.test"],
            "default_role": "user",
        },
    )
    services.connection_confirm_domains(connection=connection, actor=member.user)
    oidc_idp.control(redirect_uris=[f"{kai_server.url}/sso/oidc/{connection.provider_id}/login/callback/"])
    oidc_idp.add_user("olive", "olive@acme.test", password="idp-pass-123")
    operator = User.objects.create_user(email="olive@acme.test", password=None, is_staff=True, is_superuser=True)
    Membership.objects.create(organization=member.organization, user=operator, role="admin")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.goto(f"{kai_server.url}/api/v1/auth/sso/{member.organization.slug}/login?mode=console&next=/admin/")
        page.wait_for_selector("#username")
        assert page.url.startswith(oidc_idp.url)  # at the identity provider's own form
        page.fill("#username", "olive")
        page.fill("#password", "idp-pass-123")
        page.click("#signin")
        page.wait_for_url(f"{kai_server.url}/admin/", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "sso-admin-console.png"), full_page=True)
        assert "kAI operator console" in page.content()
        assert "olive@acme.test" in page.content().lower()
        browser.close()
