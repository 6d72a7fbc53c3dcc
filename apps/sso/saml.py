"""SAML 2.0 settings for allauth's SAML provider (python3-saml underneath): signed assertions,
strict checks (audience, destination, time window), IdP-initiated sign-in refused (every answer
must match a request this platform sent: replay of an answer finds its state already spent)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from onelogin.saml2.constants import OneLogin_Saml2_Constants

from apps.sso.models import SSOConnection
from apps.sso.signin import CLOCK_SKEW_SECONDS


def configure_clock_skew() -> None:
    """python3-saml's allowed clock drift is a module constant (300 s); ours is 2 minutes."""
    OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT = CLOCK_SKEW_SECONDS


def _metadata_idp(connection: SSOConnection) -> dict | None:
    if not connection.idp_metadata_xml:
        return None
    # deferred: heavy — the SAML metadata parser (lxml, xmlsec) loads on the first SAML sign-in, not at start
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    parsed = OneLogin_Saml2_IdPMetadataParser.parse(connection.idp_metadata_xml)
    return parsed.get("idp") or None


def provider_settings(connection: SSOConnection) -> dict:
    idp = {
        "entity_id": connection.idp_entity_id,
        "sso_url": connection.idp_sso_url,
        "x509cert": connection.idp_x509cert,
    }
    parsed = _metadata_idp(connection)
    if parsed is not None:
        idp = {
            "entity_id": parsed.get("entityId", ""),
            "sso_url": parsed["singleSignOnService"]["url"],
            "x509cert": parsed.get("x509cert") or (parsed.get("x509certMulti", {}).get("signing") or [""])[0],
        }
    elif connection.idp_metadata_url:
        idp = {"entity_id": connection.idp_entity_id, "metadata_url": connection.idp_metadata_url}
    return {
        "idp": idp,
        "attribute_mapping": {
            "uid": ["urn:oasis:names:tc:SAML:attribute:subject-id", "uid"],
            "email": [
                "urn:oid:0.9.2342.19200300.100.1.3",
                "urn:oid:1.2.840.113549.1.9.1",
                "email",
                "mail",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            ],
            "first_name": ["givenName", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"],
            "last_name": ["sn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"],
        },
        "use_nameid_for_email": False,
        "advanced": {
            "strict": True,
            "want_assertion_signed": True,
            "reject_idp_initiated_sso": True,
            "want_attribute_statement": False,
            "reject_deprecated_algorithm": True,
            "allow_single_label_domains": True,
        },
    }


def finish_acs(request, organization_slug):
    """allauth's ACS finish, with a SAML response that matches no pending request (replayed, or
    sent unasked) answered and audited like every refused sign-in instead of a bare 403."""
    # deferred: heavy — allauth's SAML views (lxml, xmlsec) load on the first SAML sign-in, not at start
    from allauth.socialaccount.providers.saml import views

    # deferred: cycle — apps.sso.adapter imports this module at load
    from apps.sso import adapter, signin

    try:
        return views.finish_acs(request, organization_slug=organization_slug)
    except PermissionDenied:
        connection = adapter.connection_for(organization_slug)
        reason = "the SAML response matches no sign-in started here (replayed or unsolicited)"
        if connection is not None:
            signin.login_refused_audit(connection, reason)
        return signin.error_response(401, f"Single sign-on failed: {reason}.")
