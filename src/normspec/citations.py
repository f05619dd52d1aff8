"""Which clauses the conformance tests cite: the clause IDs in each test's
`@pytest.mark.clauses(...)` and every other string literal in the test modules that is exactly
a clause ID (a `clause=` argument, a `ClauseRouting(...)`, a `Context.fail("BN-5.2", ...)`).

Docstrings and comments do not count: a citation is what a failure can report.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from importlib.resources import files

from normspec import registry

CLAUSE_ID = re.compile(registry.CLAUSE_ID)


def _docstrings(tree) -> set:
    """The id() of every docstring node of the module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _owner(tree) -> dict:
    """id(node) -> the name of the top-level function (test) it is in, or '<module>'."""
    owner = {}
    for top in tree.body:
        name = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else "<module>"
        for node in ast.walk(top):
            owner[id(node)] = name
    return owner


def scan_source(source: str, module: str) -> dict:
    """{clause ID: {"module::function", ...}} of one test module's source."""
    tree = ast.parse(source)
    skip, owner, cited = _docstrings(tree), _owner(tree), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                and CLAUSE_ID.fullmatch(node.value):
            cited.setdefault(node.value, set()).add(f"{module}::{owner.get(id(node), '<module>')}")
    return cited


# The machinery every conformance test runs its checks through: the clauses it cites (the
# running-statistics, shape, dtype and unchanged-input checks of every call) are cited by
# every test that calls it.
MACHINERY = ("driver", "backward", "compare", "harness")


def _machinery_citations() -> dict:
    """{clause ID: {"normspec.<module>::<function>"}} of the checks the driver and the harness
    make on every call, and the op's defining clause that a call raising on a valid input cites."""
    from normspec.registry import DATA_PARALLEL, OPS, SCALERS
    cited = {}
    for name in MACHINERY:
        source = files("normspec").joinpath(f"{name}.py").read_text(encoding="utf-8")
        for clause, where in scan_source(source, f"normspec.{name}").items():
            cited.setdefault(clause, set()).update(where)
    for row in (*OPS.values(), *SCALERS.values(), *DATA_PARALLEL.values()):
        cited.setdefault(row.defining_clause, set()).add("normspec.harness::adapter_call")
    return cited


@lru_cache(maxsize=1)
def cited_clauses() -> dict:
    """{clause ID: sorted tuple of the tests citing it} over the bundled conformance tests
    (normspec.tests.conformance), the error kinds they draw (normspec.error_inputs) and the
    checks of the machinery they run through (MACHINERY)."""
    cited = _machinery_citations()
    folder = files("normspec.tests").joinpath("conformance")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith("test_") and entry.name.endswith(".py"):
            for clause, tests in scan_source(entry.read_text(encoding="utf-8"), entry.name).items():
                cited.setdefault(clause, set()).update(tests)
    return {clause: tuple(sorted(tests)) for clause, tests in cited.items()}
