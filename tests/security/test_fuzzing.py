"""Fuzzing: schemathesis drives every operation of ``/api-openapi.json`` in-process (WSGI) as an
owner and as a ``user``; no answer may be a 5xx and every answer must match the schema."""

from __future__ import annotations

import math
import time

import pytest

from tests.conformance.regex_strategies import shared_regex_strategies
from tests.conformance.test_openapi_live import UNAVAILABLE_BY_DESIGN as UNAVAILABLE_IN_LIVE_RUN

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: total cases over both roles; spread evenly over the operations
TARGET_CASES = 2000
#: a 503 by design, with its code, while what it needs is absent here: readiness without the Celery worker
#: (GENERAL_004), voice without a speech-to-text provider or speech engine (VOICE_003), generation with a
#: default provider the fuzzer configured that cannot be reached (GENERAL_004)
UNAVAILABLE_BY_DESIGN = UNAVAILABLE_IN_LIVE_RUN


def _schema():
    import schemathesis

    from kai_platform.wsgi import application

    return schemathesis.openapi.from_wsgi("/api-openapi.json", application)


def test_every_operation_as_owner_and_user(make_member):
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks as openapi_checks

    from tests.conftest import jwt_for

    schema = _schema()
    operations = [result.ok() for result in schema.get_all_operations()]
    per_operation = max(1, math.ceil(TARGET_CASES / (2 * len(operations))))
    owner = make_member("owner", plan="enterprise")
    user = make_member("user", plan="enterprise")
    all_checks = [
        not_a_server_error,
        openapi_checks.status_code_conformance,
        openapi_checks.content_type_conformance,
        openapi_checks.response_schema_conformance,
    ]
    tokens = {}

    def token_of(member):
        if member.user.pk not in tokens:
            tokens[member.user.pk] = jwt_for(member.user)["access_token"]
        return tokens[member.user.pk]

    cases = 0
    failures: list[str] = []
    started = time.monotonic()
    with shared_regex_strategies():
        for member in (owner, user):
            for operation in operations:

                @settings(
                    max_examples=per_operation,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate],
                )
                @given(case=operation.as_strategy())
                def run(case):
                    nonlocal cases
                    cases += 1
                    headers = {"Authorization": f"Bearer {token_of(member)}"}
                    path = operation.path
                    checks = all_checks
                    try:
                        response = case.call(headers=headers)
                        if path.endswith("/auth/logout") and response.status_code < 300:
                            tokens.pop(member.user.pk)  # logout killed this access token at once, as it must
                        label = f"{case.method} {path}"
                        if label in UNAVAILABLE_BY_DESIGN and response.status_code == 503:
                            assert response.json()["code"] == UNAVAILABLE_BY_DESIGN[label], response.text
                            checks = [c for c in checks if c is not not_a_server_error]
                        if checks:
                            case.validate_response(response, checks=checks)
                    except (Exception, BaseExceptionGroup) as exc:  # collected, reported together
                        failures.append(f"{member.role} {case.method} {case.formatted_path}: {str(exc)[:1500]}")

                run()
    elapsed = time.monotonic() - started
    import os

    if os.environ.get("KAI_FUZZ_REPORT"):
        with open(os.environ["KAI_FUZZ_REPORT"], "w") as report:
            report.write("\n\n".join(failures))
    print(f"fuzzing: {cases} cases over {len(operations)} operations × 2 roles in {elapsed:.1f}s")
    assert not failures, "\n".join(failures[:40])
    assert cases >= 2000
