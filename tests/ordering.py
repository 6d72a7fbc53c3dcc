"""Slow tests first, from recorded durations (``tests/durations.json``, docs/testing.md), and how
xdist hands them out.

``make test`` runs ``--dist loadfile --no-loadscope-reorder`` with :class:`FileScheduling`: a test
file is one unit of work, run on one xdist worker (its module-scoped servers and identity providers
start once, not once per worker), except the files that start whole ``kai up`` platforms
(``PLATFORM_FILES``), which form one unit together: a platform is five processes, and starting
several at once starves the machine. Units are handed out longest first — by the sum of their
tests' recorded seconds — so the run ends on short files instead of one worker finishing a long
unit alone. Inside a unit tests keep their order. ``--store-durations`` writes the
durations of the tests that ran back into the file.
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


#: the tests that start ``kai up`` platforms: one unit of work (see the module docstring)
PLATFORM_FILES = frozenset(
    {
        "tests/test_make_run.py",
        "tests/kernel/test_make_run_supervision.py",
        "tests/kernel/test_make_run_drain.py",
        "tests/kernel/test_two_hosts.py",
        "tests/kernel/test_backup_restore.py",
    }
)
PLATFORM_UNIT = "kai-up-platforms"


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the platforms' unit."""
    path = _file_of(nodeid)
    return PLATFORM_UNIT if path in PLATFORM_FILES else path


def order_items(items: list, durations: dict[str, float]) -> None:
    """Sort ``items`` in place: units of work by the total of their tests' seconds, longest first
    (a stable sort: tests keep their order inside a unit)."""

    def seconds(item) -> float:
        if item.nodeid in durations:
            return durations[item.nodeid]
        return UNRECORDED_SLOW_SECONDS if item.get_closest_marker("slow") else 0.0

    total: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        unit = unit_of(item.nodeid)
        total[unit] += seconds(item)
        first.setdefault(unit, index)
    items.sort(key=lambda item: (-total[unit_of(item.nodeid)], first[unit_of(item.nodeid)]))


def file_scheduling():
    """xdist's file scheduler, with the platforms' files as one unit (``--dist loadfile``)."""
    from xdist.scheduler import LoadFileScheduling  # deferred: xdist is only there when tests are run with it

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return FileScheduling


class DurationRecorder:
    """Sums setup + call + teardown per test (on the xdist controller, which sees every report)
    and merges them into the durations file at the end of the session."""

    def __init__(self, path: Path = DURATIONS_PATH):
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: set[str] = set()  # an error or failure says nothing of the test's own seconds

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[report.nodeid] += report.duration
        if getattr(report, "failed", False):
            self.failed.add(report.nodeid)

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
