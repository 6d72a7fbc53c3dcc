"""The slow-first order of the suite (tests/ordering.py) and its durations file."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from tests.ordering import PLATFORM_FILES, DurationRecorder, load_durations, order_items, unit_of


class Item:
    def __init__(self, nodeid: str, slow: bool = False):
        self.nodeid, self.slow = nodeid, slow

    def get_closest_marker(self, name):
        return object() if name == "slow" and self.slow else None


def test_units_go_by_their_total_and_keep_their_own_order():
    items = [
        Item("tests/a.py::one"),
        Item("tests/a.py::two"),
        Item("tests/b.py::quick"),
        Item("tests/b.py::long"),
        Item("tests/c.py::marked", slow=True),
        Item("tests/d.py::new"),
    ]
    order_items(items, {"tests/a.py::one": 20.0, "tests/a.py::two": 15.0, "tests/b.py::long": 30.0})
    assert [i.nodeid for i in items] == [
        "tests/a.py::one",  # 35 s in all
        "tests/a.py::two",
        "tests/b.py::quick",  # 30 s in all
        "tests/b.py::long",
        "tests/c.py::marked",  # slow, unrecorded: 30 s (a tie keeps the collection order)
        "tests/d.py::new",  # unrecorded: 0
    ]


def test_the_platform_files_are_one_unit_placed_by_their_total():
    items = [
        Item("tests/a.py::long"),
        Item("tests/test_make_run.py::one"),
        Item("tests/b.py::x"),
        Item("tests/kernel/test_two_hosts.py::two"),
    ]
    durations = {
        "tests/a.py::long": 50.0,
        "tests/test_make_run.py::one": 30.0,
        "tests/kernel/test_two_hosts.py::two": 30.0,
        "tests/b.py::x": 1.0,
    }
    order_items(items, durations)
    assert [i.nodeid for i in items] == [
        "tests/test_make_run.py::one",  # 60 s, one after another on one worker
        "tests/kernel/test_two_hosts.py::two",
        "tests/a.py::long",
        "tests/b.py::x",
    ]
    assert unit_of("tests/kernel/test_backup_restore.py::t[x]") == unit_of("tests/test_make_run.py::t")
    assert unit_of("tests/a.py::t") == "tests/a.py"


def test_every_file_that_starts_a_platform_is_in_the_platforms_unit():
    root = Path(__file__).resolve().parent
    starting = {
        f"tests/{path.relative_to(root).as_posix()}"
        for path in root.rglob("test_*.py")
        if path.name != "test_ordering.py"
        and ("KaiUp(" in path.read_text() or '"kai_platform.cli", "up"' in path.read_text())
    }
    assert starting == PLATFORM_FILES


def test_recorder_merges_the_tests_that_ran(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.py").write_text("")
    path = tmp_path / "tests" / "durations.json"
    path.write_text(json.dumps({"tests/a.py::kept": 3.0, "tests/a.py::faster": 9.0, "tests/gone.py::x": 4.0}))
    recorder = DurationRecorder(path)
    for nodeid, phase_seconds in (("tests/a.py::faster", 0.2), ("tests/a.py::faster", 0.1), ("tests/a.py::new", 2.04)):
        recorder.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, duration=phase_seconds, failed=False))
    recorder.pytest_runtest_logreport(SimpleNamespace(nodeid="tests/a.py::kept", duration=0.1, failed=True))
    recorder.pytest_sessionfinish(session=None)
    # a test now under the recording threshold leaves the file, a deleted file's tests too; a failed
    # test keeps its recorded seconds
    assert load_durations(path) == {"tests/a.py::kept": 3.0, "tests/a.py::new": 2.0}
