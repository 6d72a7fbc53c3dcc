"""The layers of DESIGN §15, checked over every import in apps/ and kai_platform/ (imports inside
functions included: hiding an import in a function does not hide the dependency).

kernel (kai_platform) < accounts < shared services (files, audit, events, quotas, stepup) < runs
< features (agents, crews, workflows, approvals, knowledge, voice, scheduler, webhooks) < operator
surfaces (system, console). An app imports only from its own layer and the layers below; apps of
one layer may import each other as long as no two apps import each other, directly or round a
longer cycle. Higher layers plug into lower ones through registration in ``AppConfig.ready``.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    {"kai_platform"},
    {"accounts"},
    {"files", "audit", "events", "quotas", "stepup"},
    {"runs"},
    # sso: a sign-in feature plugged into accounts (accounts.hooks), encrypts its secrets with agents'
    # crypto; retention: prunes runs, events, audit, files and webhook deliveries by a tenant policy
    {"agents", "crews", "workflows", "approvals", "knowledge", "voice", "scheduler", "webhooks", "sso",
     "retention", "schemas"},
    {"system", "console"},
]
LAYER_OF = {app: index for index, apps in enumerate(LAYERS) for app in apps}

#: imports that break the layers today, each named; another issue (#26, layering) removes them.
#: Nothing may be added here: fix the import (registration in ``AppConfig.ready``) instead.
KNOWN_EXCEPTIONS = {
    # the kernel authenticates with accounts' models and services (#26: accounts registers them)
    ("kai_platform.tenancy.authcache", "apps.accounts.models"),
    ("kai_platform.tenancy.authentication", "apps.accounts.selectors"),
    ("kai_platform.tenancy.authentication", "apps.accounts.services"),
    ("kai_platform.tenancy.authentication", "apps.accounts.models"),
    ("kai_platform.realtime.watch", "apps.accounts.models"),
}


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
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
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
        if (source, target) in KNOWN_EXCEPTIONS:
            continue
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
        f"{source} -> {target}" for source, target in edges
        if (source, target) not in KNOWN_EXCEPTIONS and _app(source) and _app(target)
        and LAYER_OF.get(_app(target), -1) > LAYER_OF.get(_app(source), -1))
    assert violations == []


def test_no_import_cycle_between_apps():
    assert _cycles(_app_edges(_imports(_modules()))) == []


def test_known_exceptions_still_exist():
    """An exception that was fixed leaves the list (so the list only shrinks)."""
    assert sorted(KNOWN_EXCEPTIONS - _imports(_modules())) == []


def test_the_checks_catch_a_cycle_and_a_layer_violation():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert LAYER_OF["agents"] > LAYER_OF["runs"] > LAYER_OF["events"] > LAYER_OF["accounts"] > LAYER_OF["kai_platform"]
