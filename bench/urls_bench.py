"""The product's URL conf plus ``/bench/bare``: a bare Django view answering ``{}``, the B3 baseline.

It goes through the same ASGI server, the same middleware stack and the same sync-view thread as
the product's routes; only DRF, authentication, tenancy, throttling and the query are missing.
"""
from django.http import JsonResponse
from django.urls import path

from kai_platform.urls import *  # noqa: F401,F403  (handler404 & co.)
from kai_platform.urls import urlpatterns as product_urlpatterns


def bare(request):
    return JsonResponse({})


urlpatterns = [*product_urlpatterns, path("bench/bare", bare, name="bench-bare")]
