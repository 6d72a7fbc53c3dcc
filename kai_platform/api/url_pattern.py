"""The OpenAPI ``pattern`` of a URL field: exactly what DRF's ``URLField`` (Django's ``URLValidator``) accepts.

``format: uri`` admits any RFC 3986 URI (``a:``, ``urn:x``, ``http://a``) and refuses IRIs and characters Django
takes (``http://ä^@a.com``), so the document drops it for this pattern (``kai_platform.api.schema``). Django takes http, https, ftp
and ftps with a dotted host name, ``localhost``, an IPv4 or a bracketed IPv6 address. The pattern is built from
the validator's own parts, made portable: the validator's ``re.IGNORECASE`` is spelled out (JSON Schema patterns
have no flags), ``\\s`` is Python's whitespace written out (ECMA 262's differs), U+0000 is refused as everywhere,
the bracketed IPv6 host is RFC 3986's address rule (Django checks it with ``ipaddress`` after its regex), and the
user information holds no ``?``, ``#``, ``[`` or ``]`` (Django's regex admits them, but ``urlsplit`` then finds no
host, or a bad bracketed one, and the URL is refused). Not stated: Django also takes such a URL when the text
before the ``#`` is a host it would not take alone (``http://a#b@c.com``: its regex reads ``a#b`` as user
information, ``urlsplit`` the host ``a``); the pattern refuses it, as it should be read.
Left in words (``URL_RULE``): a host name is at most 253 characters and an IPv6 address at most 39.
"""

import re
from collections.abc import Iterable

from django.core.validators import URLValidator

#: Python's ``\s`` for text (what ``str.split`` splits on), and U+0000
_SPACE = (
    "\\u0000\\t\\n\\u000b\\f\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
_H16 = "[0-9a-fA-F]{1,4}"
_LS32 = f"(?:{_H16}:{_H16}|{URLValidator.ipv4_re})"
_IPV6 = "|".join(
    (
        f"(?:{_H16}:){{6}}{_LS32}",
        f"::(?:{_H16}:){{5}}{_LS32}",
        f"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        f"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        f"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        f"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        f"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        f"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        f"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    )
)


def _any_case(regex: str) -> str:
    """``[a-z…]`` → ``[a-zA-Z…]``; the literal words ``xn--`` and ``localhost`` in either case."""
    regex = regex.replace("[a-z", "[a-zA-Z").replace("xn--", "[xX][nN]--")
    return regex.replace("localhost", "".join(f"[{c}{c.upper()}]" for c in "localhost"))


def _portable(regex: str) -> str:
    return regex.replace("\u00a1-\uffff", "\\u00a1-\\uffff")


#: Django's host ``C(?:D{0,61}C)?(?:\.(?!-)D{1,63}(?<!-))*\.TLD`` (``C`` a letter, digit or U+00A1..U+FFFF, ``D`` the
#: same or ``-``) written ``(?:(?!-)D{1,63}(?<!-)\.)+TLD``: the same names (labels of 1 to 63 characters, none with
#: ``-`` first or last, then the top-level label), with one ``D`` class where it had four. A generator builds each
#: such class character by character (hypothesis: 65,375 per class, each time a field is drawn), which made a body
#: of several URL fields (``sso/connections``) too slow to generate: schemathesis' ``too_slow`` health check.
_LABEL = URLValidator.hostname_re.split("]", 1)[0] + "-]"
_NAME = f"(?:(?!-){_LABEL}{{1,63}}(?<!-)\\.)+" + URLValidator.tld_re.removeprefix("\\.")
_DJANGO_NAME = URLValidator.hostname_re + URLValidator.domain_re + URLValidator.tld_re
assert URLValidator.host_re == f"({_DJANGO_NAME}|localhost)"
_HOST = _portable(_any_case(f"({_NAME}|localhost)"))


def url_pattern(schemes: Iterable[str]) -> str:
    """The pattern of what ``URLValidator(schemes=schemes)`` accepts (see the module's text)."""
    alternatives = "|".join(
        "".join(f"[{c}{c.upper()}]" for c in scheme) for scheme in sorted(schemes, key=len, reverse=True)
    )
    return (
        f"^(?:{alternatives})://"
        f"(?:[^{_SPACE}:@/?#\\[\\]]+(?::[^{_SPACE}:@/?#\\[\\]]*)?@)?"  # user:password@ (see the module's text)
        f"(?:{URLValidator.ipv4_re}|\\[(?:{_IPV6})\\]|{_HOST})"
        "(?::[0-9]{1,5})?"  # port
        f"(?:[/?#][^{_SPACE}]*)?$"  # path, query, fragment
    )


URL_PATTERN = url_pattern(URLValidator.schemes)
URL_RULE = "An http, https, ftp or ftps URL; a host name is at most 253 characters, an IPv6 address at most 39."
#: an outbound target's URL (webhooks): http or https only
HTTP_URL_SCHEMES = ("http", "https")
HTTP_URL_PATTERN = url_pattern(HTTP_URL_SCHEMES)
HTTP_URL_RULE = "An http or https URL; a host name is at most 253 characters, an IPv6 address at most 39."

re.compile(HTTP_URL_PATTERN)
re.compile(URL_PATTERN)  # a pattern Python reads too (schemathesis and jsonschema compile it so)
