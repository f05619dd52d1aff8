"""report.json files (what `normspec check --report DIR` writes) read into implementations and
their clause x op cells: pass, finding (an expected failure, with the finding's id), fail (a
failure no finding explains), not run (with the reason), not applicable."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from normspec import expectations
from normspec.errors import UsageError
from normspec.registry import ALL_OP_NAMES, OP_NAMES, clauses_for

PASS, FINDING, FAIL, NOT_RUN, NOT_APPLICABLE, UNTESTED = "pass", "finding", "fail", "not run", "n/a", "untested"
_STATUS = {"pass": PASS, "expected-failure": FINDING, "fail": FAIL, "not-run": NOT_RUN}
_RANK = {FAIL: 4, FINDING: 3, PASS: 2, NOT_RUN: 1}
# The expected-failure message names its source: "... (PATH finding ID[ match N])"; older reports "(PATH entry N)".
_FINDING_SOURCE = re.compile(r"\((?P<path>[^()]*\.toml) finding (?P<id>[a-z0-9]+(?:-[a-z0-9]+)*)(?: match \d+)?\)\s*$")
_ENTRY_SOURCE = re.compile(r"\((?P<path>[^()]*\.toml) entry (?P<entry>\d+)\)\s*$")


@dataclass
class Cell:
    """What one implementation's results say of one clause for one op."""
    status: str
    counts: dict = field(default_factory=dict)  # result status -> number of results
    findings: dict = field(default_factory=dict)  # finding id -> its title (or the message's reason)
    failures: list = field(default_factory=list)  # (nodeid, first line of the message)
    not_run: set = field(default_factory=set)  # reasons (e.g. "cuda: not available (...)")


@dataclass
class Implementation:
    """One adapter's results in one report."""
    key: str  # unique on the site, for anchors
    adapter: str
    framework: str
    normspec_version: str
    spec_version: str
    profile: str
    source: str
    results: list
    devices: dict  # device -> None (ran) or the reason it could not
    findings_files: dict = field(default_factory=dict)  # finding id -> the expectations file it came from
    cells: dict = field(default_factory=dict)  # (clause, op) -> Cell

    tag: str = ""  # where two reports have the same adapter and framework: the report's folder

    @property
    def label(self) -> str:
        return f"{self.adapter} · {self.framework}" + (f" ({self.tag})" if self.tag else "")

    @property
    def short_label(self) -> str:
        version = self.framework.split(" ", 1)[-1] if self.framework.startswith(self.adapter) else self.framework
        return f"{self.adapter} {version}" + (f" ({self.tag})" if self.tag else "")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def report_path(path) -> Path:
    """report.json itself, or the report.json in a --report directory."""
    path = Path(path)
    candidate = path / "report.json" if path.is_dir() else path
    if not candidate.is_file():
        raise UsageError(f"{path}: no report.json (give a report.json or the directory `normspec check --report DIR` "
                         f"wrote)")
    return candidate


def load(paths) -> list:
    """The implementations of the reports at `paths` (report.json files or --report directories), with
    their cells: one per adapter, framework version and spec version (the results of several reports of
    one implementation are combined); keys made unique."""
    implementations = []
    for path in paths:
        source = report_path(path)
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
            adapters, results = document["adapters"], document["results"]
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"{source}: not a normspec report.json ({error})") from None
        for adapter in adapters:
            mine = [r for r in results if r.get("adapter") == adapter["id"]]
            same = next((i for i in implementations if (i.adapter, i.framework, i.spec_version) ==
                         (adapter["id"], adapter.get("framework", "?"), document.get("spec_version", "?"))), None)
            if same is not None:  # another run of the same implementation (e.g. more tests): one column
                same.results += mine
                same.source += f", {source}"
                continue
            implementations.append(Implementation(
                key=_slug(f"{adapter['id']}-{adapter.get('framework', '')}"), adapter=adapter["id"],
                framework=adapter.get("framework", "?"), normspec_version=document.get("normspec_version", "?"),
                spec_version=document.get("spec_version", "?"), profile=document.get("profile", "?"),
                source=str(source), results=mine, devices=adapter.get("devices", {})))
    seen = {}
    for implementation in implementations:
        seen.setdefault(implementation.key, []).append(implementation)
    for same in (group for group in seen.values() if len(group) > 1):
        for number, implementation in enumerate(same, start=1):
            folder = Path(implementation.source).parent
            implementation.tag = f"{folder.parent.name}/{folder.name}"
            implementation.key += f"-{number}"
    for implementation in implementations:
        implementation.cells = cells(implementation)
    return implementations


def _finding_of(result: dict, adapter: str, files: dict):
    """(finding id, title) of an expected-failure result: from its message's source, else by matching
    the result against the adapter's built-in expectations (reports written before findings had ids)."""
    message = result.get("message", "")
    reason = message.split(": ", 1)[-1].rsplit(" (", 1)[0]
    match = _FINDING_SOURCE.search(message)
    if match:
        files.setdefault(match["id"], match["path"])
        return match["id"], reason
    try:
        entries = expectations.builtin(adapter)
    except UsageError:
        entries = []
    params = {k: str(v) for k, v in result.items() if k in expectations.FILTERS and v is not None}
    clause = result.get("failed_clause") or (result.get("clauses") or [None])[0]
    for entry in entries:
        if entry.matches(result.get("test", ""), params) and entry.clause == clause:
            return entry.finding.id, entry.finding.title
    entry = _ENTRY_SOURCE.search(message)
    return (f"entry-{entry['entry']}" if entry else "unnamed"), reason


def cells(implementation: Implementation) -> dict:
    """(clause, op) -> Cell over the implementation's results; a failure counts for the clause it cites."""
    table = {}
    for result in implementation.results:
        status = _STATUS.get(result.get("status"), FAIL)
        cited = ([result["failed_clause"]] if status == FAIL and result.get("failed_clause")
                 else result.get("clauses") or [])
        for clause in cited:
            cell = table.setdefault((clause, result.get("op") or "all"), Cell(NOT_RUN))
            cell.counts[status] = cell.counts.get(status, 0) + 1
            if status == FINDING:
                finding_id, title = _finding_of(result, implementation.adapter, implementation.findings_files)
                cell.findings[finding_id] = title
            elif status == FAIL:
                cell.failures.append((result.get("nodeid", ""), (result.get("message") or "").splitlines()[0][:300]
                                      if result.get("message") else ""))
            elif status == NOT_RUN:
                cell.not_run.add(re.sub(r"^(Skipped: )?(not run: )?", "", result.get("message") or "skipped"))
            if _RANK[status] > _RANK[cell.status]:
                cell.status = status
    return table


def cell(implementation: Implementation, clause: str, op: str, untested: bool = False) -> Cell:
    """The cell of (clause, op), or a not-applicable / untested / not-run one where no result is."""
    if not clauses_for(op, [clause]):
        return Cell(NOT_APPLICABLE)
    found = implementation.cells.get((clause, op))
    if found is not None:
        return found
    if untested:
        return Cell(UNTESTED)
    return Cell(NOT_RUN, not_run={"no result in this report cites it for this op"})


def ops_of(implementation: Implementation) -> list:
    """The matrix's columns for an implementation: the layers, and each fitted scaler (spec/scalers.md)
    that its report has results for."""
    return [op for op in ALL_OP_NAMES if op in OP_NAMES or any(key[1] == op for key in implementation.cells)]


def summary(implementation: Implementation, clause: str, untested: bool = False) -> Cell:
    """One cell for the clause over every op: the worst status, the findings and reasons of all."""
    merged = Cell(NOT_APPLICABLE)
    for op in ops_of(implementation):
        one = cell(implementation, clause, op, untested)
        if one.status == NOT_APPLICABLE or (one.status == NOT_RUN and not one.counts):
            if one.status == NOT_RUN and merged.status == NOT_APPLICABLE:
                merged = Cell(NOT_RUN, not_run=set(one.not_run))  # kept only if no op has a result
            continue
        if merged.status == NOT_RUN and not merged.counts:
            merged = Cell(NOT_APPLICABLE)
        if merged.status in (NOT_APPLICABLE, UNTESTED) or _RANK.get(one.status, 0) > _RANK.get(merged.status, 0):
            merged.status = one.status
        merged.findings.update(one.findings)
        merged.failures += one.failures
        merged.not_run |= one.not_run
        for status, count in one.counts.items():
            merged.counts[status] = merged.counts.get(status, 0) + count
    return merged
