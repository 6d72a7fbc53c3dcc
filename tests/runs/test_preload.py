"""A worker's provider-SDK preload (``KAI_PRELOAD_SDKS``, docs/runs.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kai_platform.llm import preload_clients
from tests.helpers import BASE_DIR, subprocess_env

PROBE = (
    "import sys, django; django.setup(); from django.conf import settings; "
    "from kai_platform.llm import preload_clients; preload_clients(settings.KAI_PRELOAD_SDKS); "
    "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
)


@pytest.mark.parametrize(
    ("setting", "loaded"),
    [("openai,anthropic", "['anthropic', 'openai']"), ("openai", "['openai']"), ("", "[]")],
)
def test_a_worker_preloads_the_sdks_the_setting_names(setting, loaded):
    env = subprocess_env(KAI_PRELOAD_SDKS=setting, DJANGO_SETTINGS_MODULE="kai_platform.settings")
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == loaded


def test_a_name_that_is_no_sdk_is_refused():
    with pytest.raises(ValueError, match="KAI_PRELOAD_SDKS names no provider SDK: openia"):
        preload_clients(["openai", "openia"])
