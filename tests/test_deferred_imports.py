"""Imports live at the top of a module. An import inside a function or method (apps/ and
kai_platform/, migrations aside) stays there only with its reason on a marker comment: on the same
line, or on the line directly above the import (or above the run of consecutive import lines the
comment heads):

    # deferred: app registry — apps.py imports this module before models are loaded
    from apps.agents.models import Agent

The reasons that hold are listed in docs/development.md ("Imports inside functions").
"""

import ast
import re
from pathlib import Path

from tests.helpers import parse_source

ROOT = Path(__file__).resolve().parents[1]
#: the marker and a reason of at least two words
MARKER = re.compile(r"#\s*deferred:\s*\S+\s+\S+")


def _sources():
    for top in ("apps", "kai_platform"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), path.read_text()


def _function_imports(tree: ast.AST) -> list[ast.stmt]:
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _annotated(lines: list[str], lineno: int) -> bool:
    """The import on line ``lineno`` (1-based) carries the marker, or the comment heading its block does."""
    if MARKER.search(lines[lineno - 1]):
        return True
    index = lineno - 2
    while index >= 0 and lines[index].lstrip().startswith(("import ", "from ")):
        index -= 1  # walk up the run of import lines this one belongs to
    return index >= 0 and lines[index].lstrip().startswith("#") and bool(MARKER.search(lines[index]))


def offenders(sources) -> list[str]:
    out = []
    for name, text in sources:
        lines = text.splitlines()
        for node in _function_imports(parse_source(text, name)):
            if not _annotated(lines, node.lineno):
                out.append(f"{name}:{node.lineno}")
    return out


def test_imports_inside_functions_say_why():
    found = offenders(_sources())
    if found:
        print("\n".join(found))
    assert found == [], (
        f"{len(found)} imports inside functions without a '# deferred: <why>' comment "
        "(move them to the module top, or give the reason):\n" + "\n".join(found)
    )


def test_the_check_reads_the_marker():
    source = (
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    import csv  # deferred: heavy module, loaded on first use\n"
        "    # deferred: cycle — b imports this module at load\n"
        "    from b import x\n"
        "    from b import y\n"
        "    # deferred:\n"
        "    import re\n"
        "    # an unrelated comment\n"
        "    import sys\n"
        "class C:\n"
        "    def m(self):\n"
        "        from c import z\n"
    )
    assert offenders([("m.py", source)]) == ["m.py:3", "m.py:9", "m.py:11", "m.py:14"]
