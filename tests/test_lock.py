"""requirements.lock (``make lock``) is what every install uses: it must hold each direct dependency of
pyproject.toml (every extra) at a version the dependency's bounds allow, nothing pyproject.toml no
longer asks for, and a hash for every package; every direct dependency has an upper bound."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "kai-platform"


def _direct(pyproject: str) -> dict[str, Requirement]:
    project = tomllib.loads(pyproject)["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _locked(lock: str) -> dict[str, dict]:
    """name -> {"version", "hashes", "direct"} of each pinned package of a uv/pip-tools lock."""
    packages: dict[str, dict] = {}
    current = None
    for line in lock.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if pin:
            current = packages[canonicalize_name(pin.group(1))] = {
                "version": pin.group(2),
                "hashes": 0,
                "direct": False,
            }
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and re.search(rf"#\s+(via\s+)?{PROJECT} \(pyproject\.toml\)", line):
            current["direct"] = True
    return packages


def _disagreements(pyproject: str, lock: str) -> list[str]:
    direct, locked = _direct(pyproject), _locked(lock)
    problems = []
    for name, requirement in sorted(direct.items()):
        if name not in locked:
            problems.append(f"{name}: in pyproject.toml, not in the lock")
        elif not requirement.specifier.contains(locked[name]["version"], prereleases=True):
            problems.append(f"{name}: locked {locked[name]['version']}, pyproject.toml asks {requirement.specifier}")
    for name, package in sorted(locked.items()):
        if package["direct"] and name not in direct:
            problems.append(f"{name}: locked as a direct dependency, no longer in pyproject.toml")
        if package["hashes"] == 0:
            problems.append(f"{name}: no hash")
    return problems


def test_the_lock_agrees_with_pyproject():
    problems = _disagreements((ROOT / "pyproject.toml").read_text(), (ROOT / "requirements.lock").read_text())
    assert problems == [], "run `make lock`"


def test_every_direct_dependency_has_an_upper_bound():
    direct = _direct((ROOT / "pyproject.toml").read_text())
    unbounded = sorted(
        name
        for name, requirement in direct.items()
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier)
    )
    assert unbounded == []


PYPROJECT = """
[project]
dependencies = ["django>=5.2,<5.3"]
[project.optional-dependencies]
test = ["pytest>=8,<9"]
"""
LOCK = """django==5.2.8 \\
    --hash=sha256:aa
    # via kai-platform (pyproject.toml)
pytest==8.4.0 \\
    --hash=sha256:bb
    # via kai-platform (pyproject.toml)
sqlparse==0.5.3 \\
    --hash=sha256:cc
    # via django
"""


def test_the_check_sees_a_missing_a_stale_a_dropped_and_an_unhashed_package():
    assert _disagreements(PYPROJECT, LOCK) == []
    assert _disagreements(PYPROJECT.replace('"pytest>=8,<9"', '"pytest>=8,<9", "ruff<1"'), LOCK) == [
        "ruff: in pyproject.toml, not in the lock"
    ]
    assert _disagreements(PYPROJECT.replace("django>=5.2,<5.3", "django>=5.3,<5.4"), LOCK) == [
        "django: locked 5.2.8, pyproject.toml asks <5.4,>=5.3"
    ]
    assert _disagreements(PYPROJECT.replace(', "pytest>=8,<9"', "").replace('"pytest>=8,<9"', ""), LOCK) == [
        "pytest: locked as a direct dependency, no longer in pyproject.toml"
    ]
    assert _disagreements(PYPROJECT, LOCK.replace("    --hash=sha256:cc\n", "")) == ["sqlparse: no hash"]
