"""Content negotiation (api/renderers.KaiContentNegotiation) answers as DRF's does."""

from __future__ import annotations

import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from kai_platform.api.renderers import KaiContentNegotiation, KaiJSONRenderer, NDJSONRenderer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/json",
        "application/json; indent=2",
        "text/html",
        "application/x-ndjson",
        "text/html, */*;q=0.1",
    ],
)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=ndjson"])
@pytest.mark.parametrize("renderers", [[KaiJSONRenderer], [KaiJSONRenderer, NDJSONRenderer]])
def test_the_same_choice_as_drf(accept, query, renderers):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    request = Request(APIRequestFactory().get(f"/api/v1/agents{query}", **headers))
    answers = []
    for negotiation in (DefaultContentNegotiation(), KaiContentNegotiation()):
        try:
            renderer, media_type = negotiation.select_renderer(request, [r() for r in renderers])
            answers.append((type(renderer), media_type))
        except Exception as exc:  # noqa: BLE001 -- the same exception (406, 404) is the answer
            answers.append(type(exc))
    assert answers[0] == answers[1]


def test_an_api_request_that_accepts_only_html_is_406(owner_client):
    response = owner_client.get("/api/v1/auth/tokens", HTTP_ACCEPT="text/html")
    assert response.status_code == 406
    assert owner_client.get("/api/v1/auth/tokens").status_code == 200
