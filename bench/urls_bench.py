"""The product's URL conf plus ``/bench/bare``: a bare Django view answering ``{}``, the B3 baseline.

It goes through the same ASGI server, the same middleware stack and the same sync-view thread as
the product's routes; only DRF, authentication, tenancy, throttling and the query are missing.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from kai_platform.urls import *  # noqa: F401,F403  (handler404 & co.)
from kai_platform.urls import urlpatterns as product_urlpatterns


def bare(request):
    return JsonResponse({})


@csrf_exempt
def sink(request):
    """B12's baseline: read the request body in 64 KiB chunks and drop it."""
    size = 0
    while chunk := request.read(65536):
        size += len(chunk)
    return JsonResponse({"bytes": size})


urlpatterns = [
    *product_urlpatterns,
    path("bench/bare", bare, name="bench-bare"),
    path("bench/sink", sink, name="bench-sink"),
]
