"""The recorder's one-statement flush of many runs stays under PostgreSQL's parameter limit."""

from __future__ import annotations

from apps.runs import recorder as rec


def test_many_runs_ends_are_written_in_groups_under_the_parameter_limit(monkeypatch):
    monkeypatch.setattr(rec, "MAX_PARAMETERS", 1_000)
    log = ("info", "step", {}, None)
    # 40 runs, each with a last batch of 10 logs: ~9 parameters a log, ~95 a run
    active = [(object(), ([log] * 10, [], {}, [], 0, 0, 0)) for _ in range(40)]
    groups = rec._under_parameter_limit(active)
    assert [item for group in groups for item in group] == active  # every run once, in order
    per_log = len(rec._insert_fields(rec.ExecutionLog))
    assert len(groups) > 1 and all(sum(5 + 10 * per_log for _ in g) <= 1_000 for g in groups)
    assert rec._under_parameter_limit([]) == []
