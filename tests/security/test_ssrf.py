"""SSRF beyond the guard's unit tests (tests/agents/test_tools.py, test_providers_llm.py): DNS
rebinding — a name that resolves to a public address when checked and to loopback when connected —
is refused for the http tool and for provider (SDK) clients, because the guarded client connects only
to the address it checked."""

from __future__ import annotations

import socket

import pytest

from apps.agents.models import Tool
from apps.agents.tools import ToolContext, ToolError, run_tool
from kai_platform.llm import get_client
from kai_platform.llm.netguard import BlockedAddress, check_url
from tests.agents.llm_server import LLMServer

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.216.34"


@pytest.fixture
def server():
    with LLMServer() as running:
        yield running


@pytest.fixture
def rebinding_dns(monkeypatch):
    """``rebind.example`` answers a public address to every lookup except the one made while the
    HTTP client opens its connection, which gets 127.0.0.1 — what an attacker's DNS server with a
    zero TTL does between a check and a connect. Records (answer) per lookup."""
    import sys

    real = socket.getaddrinfo
    answers = []

    def connecting() -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name == "connect_tcp":
                return True
            frame = frame.f_back
        return False

    def fake(host, port, *args, **kwargs):
        if str(host).rstrip(".") == "rebind.example":
            address = "127.0.0.1" if connecting() else PUBLIC
            answers.append(address)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answers


def test_http_tool_refuses_dns_rebinding_to_loopback(member, server, rebinding_dns):
    tool = Tool.objects.for_org(member.organization).get(name="http_request")
    with pytest.raises(ToolError, match="refused.*127.0.0.1"):
        run_tool(
            tool, {"url": f"http://rebind.example:{server.port}/hello"}, ToolContext(organization=member.organization)
        )
    assert rebinding_dns[0] == PUBLIC and rebinding_dns[-1] == "127.0.0.1", rebinding_dns


def test_http_tool_still_reaches_a_public_answer_it_checked(member, server, monkeypatch):
    """The pinned connection goes to the checked address (here an allow-listed loopback name)."""
    member.organization.settings = {"network_allowlist": ["pinned.example"]}
    member.organization.save()
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: (
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
            if host == "pinned.example"
            else real(host, port, *a, **k)
        ),
    )
    result = run_tool(
        Tool.objects.for_org(member.organization).get(name="http_request"),
        {"url": f"http://pinned.example:{server.port}/hello"},
        ToolContext(organization=member.organization),
    )
    assert result["status"] == 200


def test_provider_client_refuses_dns_rebinding(server, rebinding_dns):
    client = get_client("openai", model="m", api_key="k", base_url=f"http://rebind.example:{server.port}/v1", timeout=5)
    with pytest.raises(Exception) as caught:
        list(client.stream([{"role": "user", "content": "hi"}]))
    assert _blocked(caught.value), repr(caught.value)
    assert server.requests == [], "the loopback server was reached"


def _blocked(exc) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BlockedAddress) or "refused" in str(exc).lower() or "BlockedAddress" in repr(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def test_a_host_name_idna_cannot_encode_is_refused_not_a_crash():
    """Django's URL validator takes any character from U+00A1 up in a host; one IDNA refuses
    (a private-use character) cannot be resolved: refused like an unknown host."""
    with pytest.raises(BlockedAddress, match="not a valid host name"):
        check_url("http://a\uf206b.example/v1")
