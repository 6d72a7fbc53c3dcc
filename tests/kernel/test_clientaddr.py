"""The client address behind trusted proxies only: rightmost untrusted hop, Forwarded, IPv6."""

from __future__ import annotations

import ipaddress

import pytest

from kai_platform.clientaddr import TrustedProxyMiddleware, parse_address, parse_forwarded, resolve

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def _h(**headers):
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]


def test_an_untrusted_peer_keeps_its_own_address_whatever_it_sends():
    assert resolve("203.0.113.9", _h(x_forwarded_for="1.2.3.4", x_forwarded_proto="https"), PROXIES) == (
        "203.0.113.9",
        None,
    )
    assert resolve("203.0.113.9", _h(forwarded="for=1.2.3.4;proto=https"), PROXIES) == ("203.0.113.9", None)


def test_the_rightmost_address_that_is_not_a_trusted_proxy_is_the_client():
    # the client prepended a lie; proxies 10.0.0.2 and 10.0.0.1 appended what they saw
    headers = _h(x_forwarded_for="6.6.6.6, 198.51.100.7, 10.0.0.2")
    assert resolve("10.0.0.1", headers, PROXIES) == ("198.51.100.7", None)


def test_only_trusted_hops_fall_back_to_the_leftmost_and_no_header_to_the_peer():
    assert resolve("10.0.0.1", _h(x_forwarded_for="10.0.0.3, 10.0.0.2"), PROXIES) == ("10.0.0.3", None)
    assert resolve("10.0.0.1", [], PROXIES) == ("10.0.0.1", None)


def test_a_hop_that_is_no_address_stops_the_walk_at_the_proxy_that_passed_it():
    assert resolve("10.0.0.1", _h(x_forwarded_for="1.2.3.4, unknown"), PROXIES) == ("10.0.0.1", None)
    assert resolve("10.0.0.1", _h(x_forwarded_for="1.2.3.4, garbage, 10.0.0.2"), PROXIES) == ("10.0.0.2", None)


def test_forwarded_header_elements_quotes_ports_and_ipv6():
    elements = parse_forwarded(
        'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711";proto=https, For="_hidden"'
    )
    assert elements == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
        {"for": "[2001:db8:cafe::17]:4711", "proto": "https"},
        {"for": "_hidden"},
    ]
    headers = _h(forwarded='for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";proto=https')
    assert resolve("10.9.9.9", headers, PROXIES) == ("2001:db8:cafe::17", "https")


def test_x_forwarded_for_wins_over_forwarded_and_protos_pair_with_hops():
    headers = _h(x_forwarded_for="198.51.100.7, 10.0.0.2", forwarded="for=6.6.6.6", x_forwarded_proto="https, http")
    assert resolve("10.0.0.1", headers, PROXIES) == ("198.51.100.7", "https")
    # one proto value (set by the edge proxy) applies to the client hop
    assert resolve("10.0.0.1", _h(x_forwarded_for="198.51.100.7, 10.0.0.2", x_forwarded_proto="https"), PROXIES) == (
        "198.51.100.7",
        "https",
    )


def test_ipv6_peers_and_hops_and_ipv4_mapped_addresses():
    assert resolve("fd00::1", _h(x_forwarded_for="2001:db8::5, fd00::2"), PROXIES) == ("2001:db8::5", None)
    assert resolve("::ffff:10.0.0.1", _h(x_forwarded_for="198.51.100.7"), PROXIES) == ("198.51.100.7", None)
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_address("192.0.2.1:8080")) == "192.0.2.1"
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert parse_address("unknown") is None and parse_address("") is None


def _scope(kind="http", peer="127.0.0.1", **headers):
    return {
        "type": kind,
        "scheme": "http" if kind == "http" else "ws",
        "client": [peer, 5555],
        "headers": _h(**headers),
    }


def test_the_middleware_rewrites_client_and_scheme_for_trusted_peers_only(settings):
    settings.KAI_TRUSTED_PROXIES = ["127.0.0.1/32"]
    scope = TrustedProxyMiddleware.rewrite(_scope(x_forwarded_for="198.51.100.7", x_forwarded_proto="https"))
    assert scope["client"] == ["198.51.100.7", 0] and scope["scheme"] == "https"
    socket = TrustedProxyMiddleware.rewrite(
        _scope("websocket", x_forwarded_for="198.51.100.7", x_forwarded_proto="https")
    )
    assert socket["client"][0] == "198.51.100.7" and socket["scheme"] == "wss"

    settings.KAI_TRUSTED_PROXIES = []
    scope = TrustedProxyMiddleware.rewrite(_scope(x_forwarded_for="198.51.100.7", x_forwarded_proto="https"))
    assert scope["client"] == ["127.0.0.1", 5555] and scope["scheme"] == "http"
    # dropped, so Django's SECURE_PROXY_SSL_HEADER cannot be fooled by a direct client either
    assert (b"x-forwarded-proto", b"https") not in scope["headers"]


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network"])
def test_a_bad_trusted_proxies_setting_stops_start_up(monkeypatch, value):
    from django.core.exceptions import ImproperlyConfigured

    from kai_platform.env import env_cidrs

    monkeypatch.setenv("KAI_TRUSTED_PROXIES", value)
    with pytest.raises(ImproperlyConfigured):
        env_cidrs("KAI_TRUSTED_PROXIES")
    monkeypatch.setenv("KAI_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,::1")
    assert env_cidrs("KAI_TRUSTED_PROXIES") == ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]
