"""The ASGI application the benchmark servers run: the product's application, with
``bench.settings_bench`` (the product's settings + ``/bench/bare``).

Rate limits stay counted in Redis on every request (that cost is part of what is measured), but
the enterprise plan's cap is raised so that tens of thousands of requests a minute from one
benchmark organization are answered instead of refused with 429.
"""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_bench"

from kai_platform.api import ratelimit  # noqa: E402
from kai_platform.asgi import application  # noqa: E402,F401

ratelimit.PLAN_RATE_LIMITS["enterprise"] = (10**9, 10**9)
