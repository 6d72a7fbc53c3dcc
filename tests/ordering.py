"""Slow tests first, from recorded durations (``tests/durations.json``, docs/testing.md).

Test files are ordered by their slowest test's recorded seconds, descending; inside a file the
tests keep their order, so tests that share a module-scoped fixture (a live server, an identity
provider) stay together and none sees its neighbours in a new order. With xdist handing out tests two at a time
(``--maxschedchunk 2``, set in ``tests/conftest.py``) the longest tests then start at once, one
per worker, and the run ends on short ones instead of one worker finishing a three-minute test
alone. ``--store-durations`` writes the durations of the tests that ran back into the file.

Groups (``--dist loadgroup``, as ``make test`` runs): tests marked ``xdist_group(name)`` run one after
another on one xdist worker — the ``kai up`` platforms (``platform``: five processes each, started one at a
time instead of three at once on two cores), and every module whose tests share a module-scoped
fixture (:func:`group_modules_sharing_a_fixture`: its server starts once, not once per xdist worker).
A group goes as early as its tests' total seconds say.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

DURATIONS_PATH = Path(__file__).resolve().parent / "durations.json"
# a test not in the file yet: marked ``slow`` it is assumed to be (starts with the long ones),
# otherwise short (runs with the quick ones)
UNRECORDED_SLOW_SECONDS = 30.0
# shorter tests are left out of the file (they all count as 0: their order barely matters)
RECORD_MIN_SECONDS = 0.5


def load_durations(path: Path = DURATIONS_PATH) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def plain_nodeid(nodeid: str) -> str:
    """A node id without the ``@group`` xdist appends under ``--dist loadgroup``."""
    head, sep, group = nodeid.rpartition("@")
    return head if sep and "::" in head and "]" not in group and "::" not in group else nodeid


def group_of(item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return None
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))


def group_modules_sharing_a_fixture(items: list) -> None:
    """Mark ``xdist_group(<module>)`` on the tests of a module that use a module-scoped fixture."""
    import pytest  # deferred: this module's recorder and order are tested without a pytest session

    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or group_of(item) is not None:
            continue
        if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(_file_of(item.nodeid)))


def order_items(items: list, durations: dict[str, float]) -> None:
    """Sort ``items`` in place: a group by its tests' total seconds, other files by their slowest
    test (a stable sort: tests keep their order inside a file)."""

    def seconds(item) -> float:
        if item.nodeid in durations:
            return durations[item.nodeid]
        return UNRECORDED_SLOW_SECONDS if item.get_closest_marker("slow") else 0.0

    weight: dict[str, float] = defaultdict(float)
    key_of = {}
    for item in items:
        group = group_of(item)
        key = f"@{group}" if group else _file_of(item.nodeid)
        key_of[item.nodeid] = key
        weight[key] = weight[key] + seconds(item) if group else max(weight[key], seconds(item))
    first = {key: index for index, key in reversed(list(enumerate(key_of.values())))}
    items.sort(key=lambda item: (-weight[key_of[item.nodeid]], first[key_of[item.nodeid]]))


class DurationRecorder:
    """Sums setup + call + teardown per test (on the xdist controller, which sees every report)
    and merges them into the durations file at the end of the session."""

    def __init__(self, path: Path = DURATIONS_PATH):
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: set[str] = set()  # an error or failure says nothing of the test's own seconds

    def pytest_runtest_logreport(self, report) -> None:
        nodeid = plain_nodeid(report.nodeid)
        self.seconds[nodeid] += report.duration
        if getattr(report, "failed", False):
            self.failed.add(nodeid)

    def pytest_sessionfinish(self, session) -> None:
        if not self.seconds:
            return
        root = self.path.parent.parent
        merged = {k: v for k, v in load_durations(self.path).items() if (root / _file_of(k)).exists()}
        for nodeid, value in self.seconds.items():
            if nodeid in self.failed:
                continue
            merged.pop(nodeid, None)
            if value >= RECORD_MIN_SECONDS:
                merged[nodeid] = round(value, 1)
        ordered = dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))
        self.path.write_text(json.dumps(ordered, indent=0) + "\n")
