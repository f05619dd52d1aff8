"""Findings as bug reports: Markdown (or JSON) from parsed expectations findings, for
`normspec findings ADAPTER`. Pure functions: what they return is the text to print."""
from __future__ import annotations

import json
import re

from normspec import clauses
from normspec.expectations import NEEDS_REWRITE

_RULE_LIMIT = 400
_AFFECTED = (("op", "ops"), ("dtype", "dtypes"), ("device", "devices"))


def _sentences(text: str) -> list:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z($])", " ".join(text.split()))


def _shortened(text: str, limit: int) -> str:
    """`text` cut at a word before `limit` characters, outside any $...$ math."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    while cut.count("$") % 2:  # an open $ or $$: cut before it
        cut = cut[:cut.rfind("$")].rstrip("$ ")
    return cut.rstrip(",;: ") + " ..."


def clause_rule(clause_id: str) -> str:
    """A clause's one-line rule: its title and its first sentence that says "shall" (with the
    formula that completes it), else its first sentence."""
    clause = clauses.lookup(clause_id)
    body = clause.text.split("\n", 1)[1] if "\n" in clause.text else ""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    prose = [i for i, p in enumerate(paragraphs) if not p.startswith(("- ", "$$", "Note", "|", "```"))]
    rule = ""
    for i in prose:
        said = next((sentence for sentence in _sentences(paragraphs[i]) if re.search(r"\bshall\b", sentence)), None)
        if said is not None:
            following = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
            if said == _sentences(paragraphs[i])[-1] and not said.endswith(".") and following.startswith("$$"):
                said += " " + " ".join(following.split())
                rest = paragraphs[i + 2] if i + 2 < len(paragraphs) else ""
                if rest[:1].islower():  # the sentence goes on after the formula
                    said += " " + _sentences(rest)[0]
            rule = said
            break
    if not rule and prose:
        rule = _sentences(paragraphs[prose[0]])[0]
    rule = _shortened(rule, _RULE_LIMIT)
    return f"{clause.title}: {rule}" if rule else clause.title


def affected(finding) -> dict:
    """The ops, dtypes and devices the finding's rows list ("any" where a row leaves one open)."""
    result = {}
    for name, label in _AFFECTED:
        values = []
        for match in finding.matches:
            if name not in match.filters:
                values = ["any"]
                break
            values += [v for v in match.filters[name] if v not in values]
        result[label] = values
    return result


def _versions_line(versions: dict) -> str:
    return "; ".join(f"{kind.upper()}: {build}" for kind, build in versions.items())


def _observed(text: str) -> list:
    """The observed value as inline code, or as a block where it spans lines."""
    if "\n" in text or "`" in text:
        return ["**Observed:**", "", "```", text.strip("\n"), "```"]
    return [f"**Observed:** `{text}`"]


def _report(number: int, finding) -> list:
    lines = [f"## {number}. {finding.title}", "",
             f"`{finding.id}` · spec clause{'s' if len(finding.clauses) > 1 else ''} {', '.join(finding.clauses)} · "
             f"upstream: {finding.upstream}", "",
             f"**Versions.** {_versions_line(finding.versions)}", "",
             "**Affected.** " + "; ".join(f"{label}: {', '.join(v)}" for label, v in affected(finding).items()),
             "", "**What happens.**", "", finding.mechanism.strip(), ""]
    if finding.intermittent or all(match.intermittent for match in finding.matches):
        lines += ["**Intermittent:** it does not show in every run of the same configuration (see below).", ""]
    elif any(match.intermittent for match in finding.matches):
        lines += ["**Intermittent in some configurations:** some of the test items it explains fail only on "
                  "some drawn inputs (see below); the snippet shows it every time.", ""]
    lines += ["**Reproduce**" + (" (needs a CUDA device)" if finding.device == "cuda" else "") + ":", ""]
    if finding.snippet_status == NEEDS_REWRITE:
        lines += ["> This snippet still needs a standalone rewrite: it reproduces the failure through normspec.", ""]
    lines += ["```python", finding.snippet.strip("\n"), "```", "",
              *_observed(finding.observed), "",
              f"**Expected:** {finding.expected}" + (f" ({finding.measured_error})" if finding.measured_error else ""),
              "", "**Spec:**", ""]
    lines += [f"- **{clause_id}** {clause_rule(clause_id)}" for clause_id in finding.clauses]
    if finding.notes:
        lines += ["", "**Notes.**", "", finding.notes.strip()]
    return lines + [""]


def render_markdown(adapter_id: str, findings: list) -> str:
    """Each finding as a Markdown bug report; the adapter's own findings last, under their own heading."""
    upstream = [f for f in findings if f.belongs_to == "framework"]
    own = [f for f in findings if f.belongs_to == "adapter"]
    lines = [f"# Findings of the `{adapter_id}` adapter", "",
             f"Non-conformances with the normalization-layer specification, spec {clauses.spec_version()} "
             f"(`normspec spec ID` prints a clause): {len(upstream)} in the framework"
             + (f", {len(own)} in the adapter's own composition (listed last, not for upstream)." if own else "."), ""]
    for number, finding in enumerate(upstream, start=1):
        lines += _report(number, finding)
    if own:
        lines += ["# The adapter's own composition; not for upstream", ""]
        for number, finding in enumerate(own, start=len(upstream) + 1):
            lines += _report(number, finding)
    return "\n".join(lines).rstrip("\n") + "\n"


def as_record(finding) -> dict:
    """A finding as plain data, with each clause's one-line rule and the affected configurations."""
    return {"id": finding.id, "title": finding.title, "belongs_to": finding.belongs_to,
            "upstream": finding.upstream, "versions": finding.versions,
            "clauses": [{"id": c, "rule": clause_rule(c)} for c in finding.clauses],
            "mechanism": finding.mechanism, "snippet": finding.snippet, "snippet_status": finding.snippet_status,
            "device": finding.device, "observed": finding.observed, "expected": finding.expected,
            "measured_error": finding.measured_error, "notes": finding.notes,
            "intermittent": finding.intermittent, "affected": affected(finding),
            "matches": [dict({k: list(v) for k, v in m.filters.items()}, clause=m.clause, intermittent=m.intermittent)
                        for m in finding.matches],
            "source": finding.path}


def render_json(adapter_id: str, findings: list) -> str:
    return json.dumps({"adapter": adapter_id, "spec_version": clauses.spec_version(),
                       "findings": [as_record(f) for f in findings]}, indent=2) + "\n"


def select(findings: list, finding_id: str | None) -> list:
    """All findings, or the one with `finding_id`; KeyError naming the ids there are."""
    if finding_id is None:
        return findings
    chosen = [f for f in findings if f.id == finding_id]
    if not chosen:
        raise KeyError(f"no finding {finding_id!r}; the ids are: {', '.join(f.id for f in findings) or 'none'}")
    return chosen
