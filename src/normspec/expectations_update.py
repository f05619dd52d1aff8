"""`normspec expectations update TARGET`: run the check and write a proposed expectations file
for a person to review: the adapter's file without the match rows (or the listed values) that
only matched passing test items, and a proposed finding for each failure no row lists. It never
writes the shipped file."""
from __future__ import annotations

import argparse
import itertools
import json
import re
import tempfile
import textwrap
from pathlib import Path

from normspec import toml_emit
from normspec.adapters import BUILTIN, load_adapter
from normspec.errors import UsageError
from normspec.expectations import FILTERS, NEEDS_REWRITE, NOT_REPORTED, builtin_path, load_findings
from normspec.expectations_convert import DIMENSIONS, merge_rows, sorted_values

# Keys of a report.json result that are not test parameters.
_RECORD_KEYS = {"test", "nodeid", "status", "failed_clause", "clauses", "message", "stale_expectation", "timing"}
_WORST = re.compile(r"observed (?P<observed>.+?), expected (?P<expected>.+?) \((?P<error>\|error\|[^)]*)\)")


def params_of(record: dict) -> dict:
    """A result's test parameters (adapter, op, dtype, device and the test's own), as text."""
    return {k: str(v) for k, v in record.items() if k not in _RECORD_KEYS and v is not None}


def outcome_of(record: dict) -> str:
    """"passing" (passed, or failed only because a row listed it), "failing" (failed or failed
    as expected) or "unknown" (not run)."""
    if record["status"] == "pass" or (record["status"] == "fail" and record.get("stale_expectation")):
        return "passing"
    return "unknown" if record["status"] == "not-run" else "failing"


def _row_matches(filters: dict, adapter_id: str, record: dict) -> bool:
    params = params_of(record)
    if "adapter" not in filters and adapter_id is not None and params.get("adapter") != adapter_id:
        return False
    return record["test"] in filters["test"] and all(
        params.get(name) in values for name, values in filters.items() if name != "test")


def _removable(filters: dict, adapter_id: str, records: list) -> bool:
    """Whether every item `filters` lists ran and passed: each combination of its listed values
    has a result, and every result it matches passed."""
    matched = [r for r in records if _row_matches(filters, adapter_id, r)]
    if not matched or any(outcome_of(r) != "passing" for r in matched):
        return False
    listed = [name for name in filters if name != "adapter"]
    for combination in itertools.product(*(filters[name] for name in listed)):
        point = dict(zip(listed, combination))
        if not any(r["test"] == point["test"] and all(params_of(r).get(k) == v for k, v in point.items()
                                                      if k != "test") for r in matched):
            return False
    return True


def prune_row(filters: dict, adapter_id: str, records: list) -> tuple:
    """The row's filters without the values whose every item ran and passed (None if none is
    left), and what was removed, as text."""
    filters, removed = dict(filters), []
    for name in [n for n in filters if n != "adapter"]:
        for value in list(filters[name]):
            if _removable(dict(filters, **{name: (value,)}), adapter_id, records):
                filters[name] = tuple(v for v in filters[name] if v != value)
                removed.append(f"{name} = {value}")
                if not filters[name]:
                    return None, removed
    return filters, removed


def _row_table(filters: dict, clause: str, intermittent: bool, finding_intermittent: bool) -> dict:
    row = {name: (list(values) if len(values) > 1 else values[0])
           for name in DIMENSIONS for values in [filters.get(name)] if values}
    row["clause"] = clause
    if intermittent != finding_intermittent:
        row["intermittent"] = intermittent
    return row


def finding_table(finding, rows: list) -> dict:
    """A parsed finding as a TOML table (keys in the order of FORMAT.md), with `rows` as matches."""
    table = {"id": finding.id, "title": finding.title, "mechanism": finding.mechanism,
             "clauses": list(finding.clauses), "versions": dict(finding.versions),
             "belongs_to": finding.belongs_to, "upstream": finding.upstream, "snippet": finding.snippet}
    optional = {"snippet_status": finding.snippet_status, "device": finding.device}
    table.update({k: v for k, v in optional.items() if v is not None})
    table.update(observed=finding.observed, expected=finding.expected)
    if finding.observed_rtol is not None:
        table["observed_rtol"] = finding.observed_rtol
    optional = {"measured_error": finding.measured_error, "notes": finding.notes}
    table.update({k: v for k, v in optional.items() if v is not None})
    if finding.intermittent:
        table["intermittent"] = True
    table["matches"] = rows
    return table


def prune(findings: list, records: list, adapter_id: str) -> tuple:
    """The findings as TOML tables without what only matched passing items, and the changes as text."""
    tables, changes = [], []
    for finding in findings:
        rows = []
        for number, match in enumerate(finding.matches, start=1):
            filters, removed = prune_row(match.filters, adapter_id, records)
            if filters is None:
                changes.append(f"finding {finding.id} match {number} ({match.clause}): removed, every item it "
                               f"lists passed")
                continue
            if removed:
                changes.append(f"finding {finding.id} match {number} ({match.clause}): removed {', '.join(removed)} "
                               f"(their items passed)")
            rows.append(_row_table(filters, match.clause, match.intermittent, finding.intermittent))
        if rows:
            tables.append(finding_table(finding, rows))
        else:
            changes.append(f"finding {finding.id}: removed, none of its rows lists a failing item")
    return tables, changes


def _reproduction(message: str) -> tuple:
    """A failure message's description (before `reproduce:`) and its reproduction code."""
    head, marker, code = message.partition("reproduce:")
    return head.strip(), textwrap.dedent(code).strip("\n") if marker else ""


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


def propose(records: list, findings: list, adapter_id: str, versions: dict, used_ids: set) -> tuple:
    """Proposed findings (TOML tables) for the failures no row lists, one per (test, clause, op),
    and the listed items that failed citing another clause than their rows, as text."""
    rows = [(m.filters, m.clause) for f in findings for m in f.matches]
    unlisted, other_clause = {}, []
    for record in records:
        if record["status"] != "fail" or not record.get("failed_clause") or record.get("stale_expectation"):
            continue
        listing = [clause for filters, clause in rows if _row_matches(filters, adapter_id, record)]
        if listing:
            other_clause.append(f"{record['nodeid']} fails citing {record['failed_clause']}; its rows cite "
                                f"{', '.join(sorted(set(listing)))}")
            continue
        unlisted.setdefault((record["test"], record["failed_clause"], record.get("op")), []).append(record)
    tables = []
    for (test, clause, op), group in unlisted.items():
        description, code = _reproduction(group[0]["message"])
        worst = _WORST.search(description)
        base = _slug(f"{adapter_id} proposed {clause} {test.removeprefix('test_')} {op or ''}")
        finding_id, number = base, 2
        while finding_id in used_ids:
            finding_id, number = f"{base}-{number}", number + 1
        used_ids.add(finding_id)
        devices = {params_of(r).get("device", "cpu") for r in group}
        table = {"id": finding_id, "title": description.splitlines()[0] if description else f"{test} fails {clause}",
                 "mechanism": f"Not yet analysed: say what the implementation does and why that breaks {clause}.",
                 "clauses": [clause],
                 "versions": {kind: versions.get(kind, "unknown") for kind in ("cpu", "cuda") if kind in devices},
                 "belongs_to": "framework", "upstream": NOT_REPORTED,
                 "snippet": (code or group[0]["message"]) + "\n", "snippet_status": NEEDS_REWRITE}
        if devices == {"cuda"}:
            table["device"] = "cuda"
        table["observed"] = worst["observed"] if worst else "see notes"
        table["expected"] = f"{worst['expected']} ({clause})" if worst else "see notes"
        if worst:
            table["measured_error"] = worst["error"]
        related = [f.id for f in findings if any(test in m.filters["test"] and m.clause == clause for m in f.matches)]
        table["notes"] = "\n\n".join(
            ([f"Findings that list {test} with {clause} for other parameters (the same mechanism?): "
              f"{', '.join(related)}."] if related else [])
            + [f"{r['nodeid']}:\n{_reproduction(r['message'])[0]}" for r in group])
        entries = [dict({k: v for k, v in params_of(r).items() if k in FILTERS and k != "adapter"},
                        test=r["test"], clause=clause) for r in group]
        table["matches"] = [_row_table({name: tuple(sorted_values(name, values)) for name, values in box.items()},
                                       clause, False, False) for box, _, _, _ in merge_rows(entries)]
        tables.append(table)
    return tables, other_clause


def _header(path) -> str:
    """The leading comment block of an expectations file, without the comment marks."""
    lines = []
    for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" ") if line.startswith("#") else "")
    return "\n".join(lines).strip("\n")


def _framework_versions(report: dict, adapter_id: str) -> dict:
    """The framework build the report's run used, per device it ran on."""
    adapter = next((a for a in report.get("adapters", []) if a.get("id") == adapter_id), {})
    framework = adapter.get("framework", "unknown")
    return {device: framework for device, reason in adapter.get("devices", {"cpu": None}).items() if reason is None}


def update(args, extra: list, check) -> int:
    """Run `check` (cli._check) with a report folder, then write the proposed file and print a summary."""
    adapter = load_adapter(args.target)
    source = args.expectations or (builtin_path(adapter.id) if args.target in BUILTIN else None)
    findings = load_findings(source) if source is not None else []
    output = Path(args.output or f"{adapter.id}.proposed.toml")
    shipped = Path(str(source)).resolve() if source is not None else None
    if shipped is not None and output.resolve() == shipped:
        raise UsageError(f"--output {output} is the expectations file itself; the update writes a proposal for a "
                         f"person to review, never the file: choose another path")
    with tempfile.TemporaryDirectory(prefix="normspec-update-") as report_dir:
        run = argparse.Namespace(**dict(vars(args), report=report_dir, spec_version=None,
                                        expectations=[str(source)] if args.expectations else None))
        status = check(run, extra)
        if status == 2:
            return 2
        report = json.loads(Path(report_dir, "report.json").read_text(encoding="utf-8"))
    records = [r for r in report["results"] if r.get("adapter") == adapter.id]
    tables, changes = prune(findings, records, adapter.id)
    proposed, other_clause = propose(records, findings, adapter.id, _framework_versions(report, adapter.id),
                                     {f.id for f in findings})
    header = (_header(source) + "\n\n" if source is not None else "") + (
        f"Proposed by `normspec expectations update {args.target}` from {len(records)} results: "
        f"{len(changes)} pruning change(s), {len(proposed)} proposed finding(s) (snippet_status marks them). "
        f"Review it, then copy it over {source if source is not None else 'your expectations file'}.")
    output.write_text(toml_emit.dumps(header, "finding", tables + proposed, inline=("matches",)), encoding="utf-8")
    load_findings(output)  # what was written is a valid expectations file
    print(f"normspec expectations update: {len(records)} results of {adapter.id}; "
          f"{source if source is not None else 'no expectations file'}")
    for change in changes:
        print(f"  pruned: {change}")
    for table in proposed:
        print(f"  proposed: {table['id']} ({len(table['matches'])} row(s)): {table['title']}")
        if table["notes"].startswith("Findings that list"):
            print(f"    {table['notes'].splitlines()[0]}")
    for line in other_clause:
        print(f"  listed, but fails citing another clause (review by hand): {line}")
    if not changes and not proposed:
        print("  no change: every row lists a failing item and every failure is listed")
    print(f"wrote {output}; review it and copy what you accept (the shipped file is unchanged)")
    return 0
