"""The slow-first order of the suite (tests/ordering.py) and its durations file."""

from __future__ import annotations

import json
from types import SimpleNamespace

from tests.ordering import DurationRecorder, load_durations, order_items


class Item:
    def __init__(self, nodeid: str, slow: bool = False):
        self.nodeid, self.slow = nodeid, slow

    def get_closest_marker(self, name):
        return object() if name == "slow" and self.slow else None


def test_files_go_by_their_slowest_test_and_keep_their_own_order():
    items = [
        Item("tests/a.py::one"),
        Item("tests/a.py::two"),
        Item("tests/b.py::quick"),
        Item("tests/b.py::long"),
        Item("tests/c.py::marked", slow=True),
        Item("tests/d.py::new"),
    ]
    order_items(items, {"tests/a.py::two": 5.0, "tests/b.py::long": 90.0, "tests/b.py::quick": 0.6})
    assert [i.nodeid for i in items] == [
        "tests/b.py::quick",
        "tests/b.py::long",  # 90 s
        "tests/c.py::marked",  # slow, unrecorded: 30 s
        "tests/a.py::one",
        "tests/a.py::two",  # 5 s
        "tests/d.py::new",
    ]  # unrecorded: 0


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


class GroupedItem(Item):
    def __init__(self, nodeid: str, group: str | None = None):
        super().__init__(nodeid)
        self.group = group

    def get_closest_marker(self, name):
        if name == "xdist_group" and self.group:
            return SimpleNamespace(args=(self.group,), kwargs={})
        return None


def test_a_group_goes_by_its_tests_total_and_its_tests_stay_together():
    items = [
        GroupedItem("tests/a.py::long"),
        GroupedItem("tests/p.py::one", "platform"),
        GroupedItem("tests/b.py::x"),
        GroupedItem("tests/q.py::two", "platform"),
    ]
    durations = {"tests/a.py::long": 50.0, "tests/p.py::one": 30.0, "tests/q.py::two": 30.0, "tests/b.py::x": 1.0}
    order_items(items, durations)
    # the group's 60 s of tests, one after another on one worker, start before the 50 s test
    assert [i.nodeid for i in items] == ["tests/p.py::one", "tests/q.py::two", "tests/a.py::long", "tests/b.py::x"]


def test_the_recorder_stores_a_grouped_test_under_its_own_id(tmp_path):
    from tests.ordering import plain_nodeid

    assert plain_nodeid("tests/p.py::one@platform") == "tests/p.py::one"
    assert plain_nodeid("tests/p.py::t[a@b.c]") == "tests/p.py::t[a@b.c]"
    assert plain_nodeid("tests/p.py::t[a@b.c]@tests/p.py") == "tests/p.py::t[a@b.c]"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "p.py").write_text("")
    path = tmp_path / "tests" / "durations.json"
    recorder = DurationRecorder(path)
    recorder.pytest_runtest_logreport(SimpleNamespace(nodeid="tests/p.py::one@platform", duration=2.0, failed=False))
    recorder.pytest_sessionfinish(session=None)
    assert load_durations(path) == {"tests/p.py::one": 2.0}
