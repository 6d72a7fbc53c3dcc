"""Settings come from the environment; production refuses unsafe defaults."""

import subprocess
import sys

import pytest

from tests.helpers import BASE_DIR

STRONG_KEY = "k" * 30 + "-Z9x!" + "q" * 30
FERNET_KEY = "kAI0kAI0kAI0kAI0kAI0kAI0kAI0kAI0kAI0kAI0kAI="  # 32 bytes, urlsafe base64


def run_manage(env_overrides, *args):
    import os

    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_ENV"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_the_default_secret_key():
    result = run_manage({"DJANGO_ENV": "production", "ALLOWED_HOSTS": "kai.example.com"}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_debug():
    result = run_manage(
        {"DJANGO_ENV": "production", "SECRET_KEY": STRONG_KEY, "DEBUG": "true", "ALLOWED_HOSTS": "kai.example.com"},
        "check",
    )
    assert result.returncode != 0
    assert "DEBUG" in result.stderr


def test_production_passes_check_deploy_without_warnings():
    result = run_manage(
        {
            "DJANGO_ENV": "production",
            "SECRET_KEY": STRONG_KEY,
            "ALLOWED_HOSTS": "kai.example.com",
            "KAI_SECRET_KEYS": FERNET_KEY,
        },
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_bad_typed_variable_is_a_clear_error():
    result = run_manage({"KAI_DB_POOL_MAX": "lots"}, "check")
    assert result.returncode != 0 and "KAI_DB_POOL_MAX must be an integer" in result.stderr


@pytest.mark.parametrize(
    "url,expected",
    [
        (
            "postgres://u:p%40ss@db.example:5433/kai",
            {"NAME": "kai", "USER": "u", "PASSWORD": "p@ss", "HOST": "db.example", "PORT": "5433"},
        ),
        (
            "postgresql://postgres@/kai?host=/var/run/pg&port=5432",
            {"NAME": "kai", "HOST": "/var/run/pg", "PORT": "5432"},
        ),
    ],
)
def test_database_url_parsing(url, expected):
    from kai_platform.env import parse_database_url

    parsed = parse_database_url(url)
    assert {k: parsed[k] for k in expected} == expected
    assert parsed["OPTIONS"] == {}


def test_non_postgres_database_url_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    from kai_platform.env import parse_database_url

    with pytest.raises(ImproperlyConfigured):
        parse_database_url("sqlite:///db.sqlite3")
