"""A real SAML 2.0 identity provider for the tests: pysaml2's ``Server`` (signing with xmlsec1)
with a self-signed key pair. It reads the platform's AuthnRequest from the redirect and answers
with a signed assertion POSTed to the platform's ACS, as a browser would carry it."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

ENTITY_ID = "https://idp.saml.test/metadata"
SSO_URL = "https://idp.saml.test/sso"


def self_signed(tmp: Path) -> tuple[Path, Path, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.saml.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp / "idp.key", tmp / "idp.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    body = "".join(pem.decode().strip().splitlines()[1:-1])
    return key_path, cert_path, body


class SamlIdP:
    def __init__(self, tmp: Path, sp_metadata: list[str]):
        key, cert, self.cert_body = self_signed(tmp)
        config = IdPConfig()
        config.load(
            {
                "entityid": ENTITY_ID,
                "service": {
                    "idp": {
                        "endpoints": {"single_sign_on_service": [(SSO_URL, BINDING_HTTP_REDIRECT)]},
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "attribute_restrictions": None,
                                "name_form": NAME_FORMAT_URI,
                            }
                        },
                    }
                },
                "key_file": str(key),
                "cert_file": str(cert),
                "metadata": {"inline": sp_metadata},
                "xmlsec_binary": "/usr/bin/xmlsec1",
            }
        )
        self.server = Server(config=config)

    def read_request(self, location: str):
        """The AuthnRequest of the platform's redirect to ``SSO_URL``."""
        query = parse_qs(urlsplit(location).query)
        request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
        return request, query.get("RelayState", [""])[0]

    def response(self, request, email: str, *, groups=(), audience: str | None = None, sign: bool = True) -> str:
        """A base64 SAMLResponse for ``request``; ``audience`` names another SP (its metadata given)."""
        acs = request.assertion_consumer_service_url
        identity = {"email": [email], "uid": [email.split("@")[0]], "groups": list(groups)}
        response = self.server.create_authn_response(
            identity=identity,
            in_response_to=request.id,
            destination=acs,
            sp_entity_id=audience or request.issuer.text,
            userid=email,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_response=False,
            sign_assertion=sign,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        return base64.b64encode(str(response).encode()).decode()


__all__ = ["SamlIdP", "ENTITY_ID", "SSO_URL", "BINDING_HTTP_POST"]
