"""The clause index, derived from the spec text (spec/*.md): the one source of truth.

A clause is a Markdown heading `## [ID] Title` (levels 2 to 4); its text runs to
the next heading of the same or a higher level. `normspec spec --list` prints the
index; tests and reports cite the IDs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

_HEADING = re.compile(r"^(#{1,6}) (?:\[([A-Z]+-[0-9]+(?:\.[0-9]+)*)\] )?(.+?)\s*$")
_VERSION = re.compile(r"^Version: ([0-9]+\.[0-9]+\.[0-9]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    document: str  # path relative to spec/
    text: str  # the heading and body, as Markdown


def _documents():
    root = files("normspec.spec")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            yield entry.name, entry.read_text(encoding="utf-8")
        elif entry.is_dir() and entry.name == "ops":
            for sub in sorted(entry.iterdir(), key=lambda e: e.name):
                if sub.name.endswith(".md"):
                    yield f"ops/{sub.name}", sub.read_text(encoding="utf-8")


def _parse(document: str, text: str):
    lines = text.splitlines()
    headings, fenced = [], False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            headings.append((number, len(match.group(1)), match.group(2), match.group(3)))
    for i, (number, level, clause_id, title) in enumerate(headings):
        if clause_id is None:
            continue
        end = next((n for n, lvl, _, _ in headings[i + 1:] if lvl <= level), len(lines))
        yield Clause(clause_id, title, document, "\n".join(lines[number:end]).strip())


@lru_cache(maxsize=1)
def index() -> dict:
    """Every clause by ID, in document order. Raises if an ID is defined twice."""
    clauses = {}
    for document, text in _documents():
        for clause in _parse(document, text):
            if clause.id in clauses:
                raise ValueError(f"clause {clause.id} is defined twice ({clauses[clause.id].document}, {document})")
            clauses[clause.id] = clause
    return clauses


@lru_cache(maxsize=1)
def spec_version() -> str:
    """The version line of spec/README.md."""
    match = _VERSION.search(files("normspec.spec").joinpath("README.md").read_text(encoding="utf-8"))
    if not match:
        raise ValueError("spec/README.md has no 'Version: X.Y.Z' line")
    return match.group(1)


def lookup(clause_id: str) -> Clause:
    """The clause `clause_id`, or KeyError naming near IDs."""
    clauses = index()
    if clause_id in clauses:
        return clauses[clause_id]
    prefix = clause_id.split("-")[0]
    near = [c for c in clauses if c.startswith(prefix)][:12]
    raise KeyError(f"no clause {clause_id!r} in normspec {spec_version()}" + (f"; clauses of {prefix}: {', '.join(near)}" if near else ""))


def examples():
    """The worked examples of the spec: (document, TOML text) of each ```normspec-example block."""
    for document, text in _documents():
        for block in re.findall(r"^```normspec-example\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
            yield document, block
