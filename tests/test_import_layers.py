"""The layers, checked over every import in apps/ and kai_platform/ (imports inside functions
included: hiding an import in a function does not hide the dependency).

kernel (kai_platform) < accounts < shared services (files, audit, events, quotas, stepup) < runs
< features (agents, crews, workflows, approvals, knowledge, voice, scheduler, webhooks, sso,
retention) < operator surfaces (system, console). An app imports only from its own layer and the
layers below; apps of one layer may import each other as long as no two apps import each other,
directly or round a longer cycle. Higher layers plug into lower ones through registration in
``AppConfig.ready`` (kai_platform/ports.py). The same rules are the import-linter contract in
pyproject.toml (``make lint``); this module runs it and checks that both name the same layers.
"""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import parse_source

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    {"kai_platform"},
    {"accounts"},
    {"files", "audit", "events", "quotas", "stepup"},
    {"runs"},
    # sso: a sign-in feature plugged into accounts (accounts.hooks), encrypts its secrets with agents'
    # crypto; retention: prunes runs, events, audit, files and webhook deliveries by a tenant policy
    {
        "agents",
        "crews",
        "workflows",
        "approvals",
        "knowledge",
        "voice",
        "scheduler",
        "webhooks",
        "sso",
        "retention",
        "schemas",
    },
    {"system", "console"},
]
LAYER_OF = {app: index for index, apps in enumerate(LAYERS) for app in apps}


def _modules() -> dict[str, Path]:
    modules = {}
    for top in ("apps", "kai_platform"):
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _app(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "kai_platform":
        return "kai_platform"
    return parts[1] if parts[0] == "apps" and len(parts) > 1 else None


def _imports(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(importing module, imported module) for every import of a module of this repository."""
    edges = set()
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(parse_source(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    edges.add((module, name))
    return edges


def _app_edges(edges) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        a, b = _app(source), _app(target)
        if a and b and a != b:
            graph.setdefault(a, set()).add(b)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one app (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_app_has_a_layer():
    apps = {path.name for path in (ROOT / "apps").iterdir() if (path / "apps.py").exists()}
    assert sorted(apps - set(LAYER_OF)) == [], "place the new app in a layer of DESIGN §15 (LAYERS above)"


def test_imports_go_down_the_layers_only():
    edges = _imports(_modules())
    violations = sorted(
        f"{source} -> {target}"
        for source, target in edges
        if _app(source) and _app(target) and LAYER_OF.get(_app(target), -1) > LAYER_OF.get(_app(source), -1)
    )
    assert violations == []


def test_no_import_cycle_between_apps():
    assert _cycles(_app_edges(_imports(_modules()))) == []


def _private_names_across_apps(modules: dict[str, Path]) -> list[str]:
    """``from apps.x.m import _name`` and ``m._name`` on a module of another app (or the kernel)."""
    found = []
    for module, path in modules.items():
        tree = parse_source(path.read_text(), str(path))
        bound = {}  # local name -> the module of this repository it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and _app(node.module or ""):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if (
                        alias.name.startswith("_")
                        and not alias.name.startswith("__")
                        and _app(node.module) != _app(module)
                    ):
                        found.append(f"{module}: {full}")
                    if full in modules:
                        bound[alias.asname or alias.name] = full
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules:
                        bound[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and _app(bound[node.value.id]) != _app(module)
            ):
                found.append(f"{module}: {bound[node.value.id]}.{node.attr}")
    return sorted(set(found))


def test_no_app_uses_another_apps_private_names():
    assert _private_names_across_apps(_modules()) == []


def _contract(contract_id: str) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == contract_id)


def test_the_import_contract_names_these_layers():
    layers = [
        {name.strip().removeprefix("apps.") for name in layer.split(":")}
        for layer in reversed(_contract("layers")["layers"])
    ]
    assert layers == LAYERS


def test_the_import_contract_is_kept():
    """import-linter (grimp's graph, every import) agrees with the checks above."""
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def _write(directory: Path, name: str, text: str) -> Path:
    (directory / name).write_text(text)
    return directory / name


def test_the_checks_catch_a_cycle_a_layer_violation_and_a_private_name(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _private_names_across_apps(
        {
            "apps.a.m": _write(tmp_path, "m.py", "from apps.b.n import _x\n"),
            "apps.b.n": _write(tmp_path, "n.py", "_x = 1\n"),
        }
    ) == ["apps.a.m: apps.b.n._x"]
    assert LAYER_OF["agents"] > LAYER_OF["runs"] > LAYER_OF["events"] > LAYER_OF["accounts"] > LAYER_OF["kai_platform"]
