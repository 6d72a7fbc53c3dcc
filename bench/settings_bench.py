"""The product's settings with a bench-only URL conf, so the bare baseline view is served only by
the benchmark's ASGI servers and never by the product."""

from kai_platform.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls_bench"
