"""SAML 2.0 sign-in through allauth's SAML provider (python3-saml) against a pysaml2 identity
provider, through the real server: signed assertions accepted; wrong audience, expired, from the
future (beyond the 2-minute skew), unsigned, tampered and replayed ones refused."""

from __future__ import annotations

import datetime
import re

import httpx2 as httpx
import pytest
import time_machine

from apps.audit.models import AuditEvent
from apps.sso import services
from apps.sso.models import SSOConnection, SSOIdentity
from tests.sso.saml_idp import ENTITY_ID, SSO_URL, SamlIdP

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def saml_setup(kai_server, member, tmp_path):
    from tests.sso.saml_idp import self_signed

    _, _, cert = self_signed(tmp_path)  # replaced below by the IdP's own
    connection = services.connection_create(
        organization=member.organization,
        actor=member.user,
        data={
            "protocol": "saml",
            "idp_entity_id": ENTITY_ID,
            "idp_sso_url": SSO_URL,
            "idp_x509cert": cert,
            "allowed_domains": ["acme.test"],
            "default_role": "user",
            "role_claim": "groups",
            "role_mapping": {"engineering": "developer"},
        },
    )
    services.connection_confirm_domains(connection=connection, actor=member.user)
    metadata = httpx.get(f"{kai_server.url}/sso/saml/{connection.provider_id}/metadata/").text
    assert "AssertionConsumerService" in metadata
    other_sp = metadata.replace(f'entityID="{kai_server.url}', 'entityID="https://other-sp.test')
    idp = SamlIdP(tmp_path, [metadata, other_sp])
    SSOConnection.objects.filter(pk=connection.pk).update(idp_x509cert=idp.cert_body)
    return connection, idp


def _start(kai_server, member, idp):
    client = httpx.Client(timeout=20)
    redirect = client.get(f"{kai_server.url}/api/v1/auth/sso/{member.organization.slug}/login")
    assert redirect.status_code == 302 and redirect.headers["location"].startswith(SSO_URL)
    request, relay = idp.read_request(redirect.headers["location"])
    return client, request, relay


def _post(client, kai_server, connection, saml_response, relay=""):
    acs = f"{kai_server.url}/sso/saml/{connection.provider_id}/acs/"
    return client.post(acs, data={"SAMLResponse": saml_response, "RelayState": relay}, follow_redirects=True)


def test_saml_sign_in_and_refused_assertions(kai_server, member, saml_setup):
    connection, idp = saml_setup
    client, request, relay = _start(kai_server, member, idp)
    signed = idp.response(request, "sam@acme.test", groups=["engineering"])
    done = _post(client, kai_server, connection, signed, relay)
    assert done.status_code == 200, done.text
    tokens = httpx.post(f"{kai_server.url}/api/v1/auth/sso/exchange", json={"code": done.json()["code"]}).json()
    me = httpx.get(
        f"{kai_server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert me["email"] == "sam@acme.test" and me["role"] == "developer"

    results = {}
    # replayed: the same signed response again
    results["replayed"] = _post(client, kai_server, connection, signed, relay)
    # wrong audience: a valid signature, made out to another service provider
    client, request, relay = _start(kai_server, member, idp)
    results["wrong audience"] = _post(
        client,
        kai_server,
        connection,
        idp.response(
            request, "sam@acme.test", audience=f"https://other-sp.test/sso/saml/{connection.provider_id}/metadata/"
        ),
        relay,
    )
    # expired: issued 10 minutes ago (5-minute lifetime), past the 2-minute skew
    client, request, relay = _start(kai_server, member, idp)
    with time_machine.travel(datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)):
        old = idp.response(request, "sam@acme.test")
    results["expired"] = _post(client, kai_server, connection, old, relay)
    # from the future: issued 3 minutes ahead (over the 2-minute skew)
    client, request, relay = _start(kai_server, member, idp)
    with time_machine.travel(datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=3)):
        future = idp.response(request, "sam@acme.test")
    results["issued 3 min in the future"] = _post(client, kai_server, connection, future, relay)
    # unsigned assertion
    client, request, relay = _start(kai_server, member, idp)
    results["unsigned"] = _post(
        client, kai_server, connection, idp.response(request, "sam@acme.test", sign=False), relay
    )
    # tampered: the signed assertion's email changed afterwards
    client, request, relay = _start(kai_server, member, idp)
    import base64

    xml = base64.b64decode(idp.response(request, "sam@acme.test")).decode()
    forged = base64.b64encode(re.sub("sam@acme.test", "boss@acme.test", xml).encode()).decode()
    results["tampered"] = _post(client, kai_server, connection, forged, relay)

    for case, response in results.items():
        assert response.status_code in (400, 401, 403), (case, response.status_code, response.text[:300])
        assert "expires_in" not in response.json(), case  # no one-time code handed out
        print(f"refused: {case}: {response.status_code} {response.json()['detail']}")
    assert not SSOIdentity.objects.filter(email="boss@acme.test").exists()
    refused = AuditEvent.objects.filter(organization=member.organization, action="sso.login.refused").count()
    assert refused >= len(results)


def test_saml_sign_in_within_clock_skew_is_accepted(kai_server, member, saml_setup):
    connection, idp = saml_setup
    client, request, relay = _start(kai_server, member, idp)
    with time_machine.travel(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)):
        ahead = idp.response(request, "ann@acme.test")
    done = _post(client, kai_server, connection, ahead, relay)
    assert done.status_code == 200, done.text
