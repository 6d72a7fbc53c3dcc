"""drf-spectacular hooks and security schemes."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


def only_canonical_api(endpoints):
    """The API is served under /api/v1/ and /api/; the document lists /api/v1/ once."""
    return [ep for ep in endpoints if ep[0].startswith("/api/v1/")]


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "kai_platform.tenancy.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Access token from auth/login. Pick the organization with X-Organization.",
        }


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "kai_platform.tenancy.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kai_ API key",
            "description": "Platform API key (kai_…) from auth/tokens, bound to one organization and role.",
        }
