"""Conformance reports: the clause x op matrix (terminal and summary.md) and report.json."""
from __future__ import annotations

import json
import platform
from collections import defaultdict
from pathlib import Path

import normspec
from normspec import clauses, untested
from normspec.registry import ALL_OP_NAMES, clauses_for

_SYMBOL = {"pass": "pass", "fail": "FAIL", "expected-failure": "expected", "not-run": "not run"}
_RANK = {"fail": 3, "expected-failure": 2, "pass": 1, "not-run": 0}


def _cells(results):
    """{(clause, op): worst status and counts}: a failure counts for the clause it cites."""
    cells = defaultdict(lambda: defaultdict(int))
    for result in results:
        cited = ([result["failed_clause"]] if result["status"] == "fail" and result["failed_clause"]
                 else result["clauses"])
        for clause in cited or ["(uncited)"]:
            cells[(clause, result.get("op") or "all")][result["status"]] += 1
    return cells


def _cell_text(counts) -> str:
    worst = max(counts, key=_RANK.get)
    if worst == "pass":
        return "pass"
    return f"{_SYMBOL[worst]} {counts[worst]}" + (f" (+{counts['pass']} pass)" if counts.get("pass") else "")


def summary_markdown(state) -> str:
    lines = [f"normspec {normspec.__version__}, spec {clauses.spec_version()}, profile {state.profile}"]
    for adapter in state.adapters:
        results = [r for r in state.results if r.get("adapter") == adapter.id]
        if not results:
            continue
        counts = defaultdict(int)
        for r in results:
            counts[r["status"]] += 1
        lines += ["", f"### {adapter.id} ({adapter.framework_version()})",
                  ", ".join(f"{counts[s]} {s}" for s in ("pass", "fail", "expected-failure", "not-run") if counts[s])]
        lines += [f"configuration: {name} = {value}" for name, value in adapter.configuration().items()]
        for (adapter_id, device), reason in sorted(state.device_notes.items()):
            if adapter_id == adapter.id:
                lines.append(f"device {device} not run: {reason}")
        cells = _cells(results)
        ops = [op for op in ALL_OP_NAMES if any(key[1] == op for key in cells)] + (["all"] if any(k[1] == "all" for k in cells) else [])
        lines += ["", "| clause | " + " | ".join(ops) + " |", "|---" * (len(ops) + 1) + "|"]
        order = list(clauses.index())
        for clause in sorted({k[0] for k in cells}, key=lambda c: (order.index(c) if c in order else len(order), c)):
            row = [_cell_text(cells[(clause, op)]) if (clause, op) in cells else "" for op in ops]
            lines.append(f"| {clause} | " + " | ".join(row) + " |")
        # The clauses no test cites (normspec.untested), so that the matrix shows its gaps.
        lines += [f"| {clause} | " + " | ".join("untested" if op == "all" or clauses_for(op, [clause]) else ""
                                              for op in ops) + " |" for clause, _ in untested.rows()]
        lines += ["", "Untested: " + "; ".join(f"{clause} ({entry.kind})" for clause, entry in untested.rows())
                  + " (normspec.untested says why)"]
        failures = [r for r in results if r["status"] == "fail"]
        if failures:
            lines += ["", "Failures:"] + [f"- {r['nodeid']}: {r['failed_clause'] or 'error'}" for r in failures]
    return "\n".join(lines)


def timing_totals(results, by: str = "adapter") -> dict:
    """Per value of the result field `by` (adapter, test): the sums of the per-test counters
    (examples, calls, seconds, wall, adapter statistics)."""
    totals = defaultdict(lambda: defaultdict(float))
    for result in results:
        for key, value in (result.get("timing") or {}).items():
            totals[result.get(by)][key] += value
    return {group: dict(values) for group, values in totals.items()}


def write(directory, state) -> None:
    """report.json and summary.md in `directory` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "normspec_version": normspec.__version__,
        "spec_version": clauses.spec_version(),
        "profile": state.profile,
        "python": platform.python_version(),
        "adapters": [{"id": a.id, "framework": a.framework_version(), "devices": a.device_status(),
                      "configuration": a.configuration()} for a in state.adapters],
        "timing": timing_totals(state.results),
        "results": state.results,
    }
    (directory / "report.json").write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    (directory / "summary.md").write_text(summary_markdown(state) + "\n", encoding="utf-8")
