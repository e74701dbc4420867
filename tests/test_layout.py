"""The codebase keeps the shape docs/architecture.md describes: small functions, a loop that
reads in one screen, no module named like an API function."""

import ast
import inspect
from pathlib import Path

import edgenas
from edgenas.loop.run import run_search

PACKAGE = Path(edgenas.__file__).parent


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_is_over_100_lines():
    long = [(where, n) for where, n in _functions() if n > 100]
    assert not long, f"split these: {long}"


def test_the_search_loop_reads_in_one_screen():
    lines = len(inspect.getsource(run_search).splitlines())
    assert lines <= 80, f"run_search is {lines} lines"
    assert "while (batch := session.ask()) is not None" in inspect.getsource(run_search)
