"""One hypothesis regex strategy per pattern for a whole-API schemathesis run.

Schemathesis asks hypothesis for a regex strategy for every string field it meets, and hypothesis's
own strategy cache has evicted the pattern by the time the next field asks for it, so the few
patterns the schema uses (``^[^\\u0000]*$`` on every string field; its complement of one character
over all of Unicode is slow to build) were built again for each field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def shared_regex_strategies() -> Iterator[None]:
    """While active, the same pattern, flags and alphabet get the same (immutable) strategy."""
    # hypothesis's from_regex looks this private function up at each call; without it, nothing is shared
    from hypothesis.strategies._internal import regex as module

    original = getattr(module, "regex_strategy", None)
    if original is None:
        yield
        return
    built: dict[tuple, object] = {}

    def shared(pattern, fullmatch, *, alphabet, **options):
        key = (
            getattr(pattern, "pattern", pattern),
            getattr(pattern, "flags", 0),
            fullmatch,
            repr(alphabet),
            tuple(sorted(options.items())),
        )
        if key not in built:
            built[key] = original(pattern, fullmatch, alphabet=alphabet, **options)
        return built[key]

    module.regex_strategy = shared
    try:
        yield
    finally:
        module.regex_strategy = original
