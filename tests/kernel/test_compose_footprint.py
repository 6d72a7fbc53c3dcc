"""The compose footprint (docker-compose.yml + Dockerfile) runs what ``make run`` runs, checked
without docker: web replicas behind the trusted proxy, a runs worker started with ``make run``'s
flags, a default worker, exactly one beat — from one image, as a non-root user, with healthchecks
and a stop grace period longer than the drain. (``.ci/run`` also resolves it with
``docker compose config`` / ``docker-compose config`` where one of them is installed.)"""

from __future__ import annotations

import ipaddress
import re
import shlex

import pytest
import yaml

from kai_platform import cli
from kai_platform.drain import drain_seconds
from kai_platform.settings import BASE_DIR

COMPOSE = BASE_DIR / "docker-compose.yml"
DOCKERFILE = BASE_DIR / "Dockerfile"
KAI_ROLES = {"migrate", "web", "worker", "runs-worker", "beat"}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _expand(value: str) -> str:
    """``${VAR:-default}`` as compose resolves it with VAR unset (``${VAR:?message}`` gives ``VAR``)."""
    return _VARIABLE.sub(lambda m: m.group(3) if (m.group(2) or "").endswith("-") else m.group(1), value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _command(service: dict) -> list[str]:
    command = service.get("command") or []  # (postgres: the image's own)
    return shlex.split(_expand(command)) if isinstance(command, str) else [_expand(c) for c in command]


def _env(service: dict) -> dict:
    return {k: _expand(str(v)) for k, v in (service.get("environment") or {}).items()}


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _celery_args(argv: list[str]) -> list[str]:
    """What follows ``celery`` in a command (``python -m celery`` or the ``celery`` script); [] if none."""
    return argv[argv.index("celery") + 1 :] if "celery" in argv else []


def test_every_role_runs_from_the_one_image(services):
    assert KAI_ROLES <= set(services), sorted(services)
    images = {(s.get("image"), repr(s.get("build"))) for name, s in services.items() if name in KAI_ROLES}
    assert len(images) == 1, images
    ((image, build),) = images
    assert image and "Dockerfile" in build


def test_web_replicas_behind_the_trusted_proxy(compose, services):
    web = services["web"]
    assert web["deploy"]["replicas"] >= 2
    assert _command(web)[:3] == ["python", "-m", "kai_platform.server"]  # make run's server (drain, close codes)
    assert _command(web)[-1] == "kai_platform.asgi:application"
    proxies = _env(web)["KAI_TRUSTED_PROXIES"]
    network = ipaddress.ip_network(proxies)
    ipam = compose["networks"]["default"]["ipam"]["config"][0]
    assert network == ipaddress.ip_network(ipam["ip_range"])  # the containers of the footprint's network
    assert ipaddress.ip_address(ipam["gateway"]) not in network  # published ports' peer is not believed


def test_runs_worker_starts_like_make_runs(services, monkeypatch):
    monkeypatch.setenv("KAI_REDIS_PREFIX", "kai")
    monkeypatch.delenv("KAI_RUNS_CONCURRENCY", raising=False)
    runs = services["runs-worker"]
    assert _env(runs)["KAI_PROCESS"] == "runs-worker"
    assert _env(runs)["KAI_REDIS_PREFIX"] == "kai"
    expected = cli.runs_worker_command()
    assert "KAI_PROCESS=runs-worker" in expected
    assert _celery_args(_command(runs)) == _celery_args(expected)  # threads pool, 2,000, queue kai.runs


def test_default_worker_starts_like_make_runs(services, monkeypatch):
    monkeypatch.delenv("KAI_WORKER_CONCURRENCY", raising=False)
    worker = services["worker"]
    assert "KAI_PROCESS" not in _env(worker)
    expected = cli.worker_command(["-Q", "kai.default", "-n", "default@%h"])
    assert _celery_args(_command(worker)) == _celery_args(expected)


def test_exactly_one_beat(services):
    beats = [name for name, s in services.items() if "beat" in _celery_args(_command(s))[:3]]
    assert beats == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert _celery_args(_command(services["beat"])) == _celery_args(cli.beat_command())
    workers = [name for name, s in services.items() if "worker" in _celery_args(_command(s))[:3]]
    assert sorted(workers) == ["runs-worker", "worker"]
    assert all("-B" not in _command(services[w]) and "--beat" not in _command(services[w]) for w in workers)


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"} and not users[-1].startswith("0:"), users
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert lines[0].startswith("#") or lines[0].startswith("FROM")


def test_long_running_roles_have_healthchecks(services):
    for name in ("web", "worker", "runs-worker", "beat"):
        check = services[name].get("healthcheck") or {}
        assert not check.get("disable") and check.get("test"), (name, check)


def test_stop_grace_period_outlasts_the_drain(services, monkeypatch):
    monkeypatch.delenv("KAI_DRAIN_SECONDS", raising=False)
    for name in ("web", "worker", "runs-worker"):
        drain = float(_env(services[name])["KAI_DRAIN_SECONDS"])
        assert drain == drain_seconds()  # the footprint's default is the platform's
        assert _seconds(services[name]["stop_grace_period"]) > drain, name  # SIGKILL only after the drain
