"""Extension points other apps register in their ``AppConfig.ready`` (accounts imports no feature)."""

from __future__ import annotations

from collections.abc import Callable

#: ``check(user=, step_up_code=) -> None``, called before a password sign-in issues tokens; raises to refuse it
_password_login_checks: list[Callable] = []


def register_password_login_check(check: Callable) -> None:
    if check not in _password_login_checks:
        _password_login_checks.append(check)


def run_password_login_checks(*, user, step_up_code: str | None = None) -> None:
    for check in _password_login_checks:
        check(user=user, step_up_code=step_up_code)
