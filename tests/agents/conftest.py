import pytest

from tests.agents.llm_server import LLMServer


@pytest.fixture
def llm_server():
    with LLMServer() as server:
        yield server


@pytest.fixture
def allow_loopback(member):
    """The organization allow-lists loopback (what the allow-list is for: a local test server)."""
    org = member.organization
    org.settings = {**(org.settings or {}), "network_allowlist": ["127.0.0.1"]}
    org.save(update_fields=["settings"])
    return org
