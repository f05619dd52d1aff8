"""The findings of each implementation on the site: one page per adapter, each finding under a
heading whose anchor is its id (`findings/torch.md#torch-half-batch-stats-rounded`), so that the
matrix and the clause pages link to it. The findings come from the expectations file the report's
messages name, or the adapter's built-in file."""
from __future__ import annotations

from pathlib import Path

from normspec import expectations
from normspec.errors import UsageError


def findings_of(implementation) -> list:
    """The Finding records behind an implementation's expected failures: from the files its report
    names where they exist here, else the built-in file of its adapter."""
    found, seen = [], set()
    for path in sorted(set(implementation.findings_files.values())):
        if Path(path).is_file():
            try:
                loaded = expectations.load_findings(path)
            except UsageError:
                continue
            found += [f for f in loaded if f.id not in seen]
            seen |= {f.id for f in loaded}
    try:
        builtin = expectations.builtin_findings(implementation.adapter)
    except UsageError:
        builtin = []
    return found + [f for f in builtin if f.id not in seen]


def page(adapter: str, findings: list, clause_link) -> str:
    """The Markdown page of an adapter's findings; `clause_link(clause_id)` is the link to a clause."""
    lines = [f"# Findings: {adapter}", "",
             f"The known non-conformances of `{adapter}`, as its expectations file records them "
             f"(format: `adapters/expectations/FORMAT.md`). Each anchor is the finding's id.", ""]
    if not findings:
        lines.append("No findings recorded.")
    for finding in findings:
        clause_links = ", ".join(f"[{c}]({clause_link(c)})" for c in finding.clauses)
        versions = "; ".join(f"{k}: {v}" for k, v in finding.versions.items())
        lines += [f"## {finding.title} {{#{finding.id}}}", "",
                  f"`{finding.id}` · clauses {clause_links} · belongs to the {finding.belongs_to} · "
                  f"{finding.upstream} · observed with {versions}", "",
                  finding.mechanism.strip(), "",
                  "```python", finding.snippet.strip(), "```", "",
                  f"Observed: `{finding.observed}`  ", f"Expected: {finding.expected}", ""]
        if finding.notes:
            lines += [finding.notes.strip(), ""]
    return "\n".join(lines) + "\n"
