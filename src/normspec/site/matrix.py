"""The conformance matrix page (as wpt.fyi and test262.fyi show browsers and engines): one row per
clause, one column per implementation (adapter and framework version), then each implementation's
clause x op table; and the one-line conformance summary shown under each clause of the spec.

Every row's anchor is `matrix-<clause ID>`; a finding links to its anchor on the adapter's findings
page; a cell that did not run says why."""
from __future__ import annotations

from html import escape

from normspec import untested
from normspec.site import reports
from normspec.site.pages import relative

PAGE = "matrix.md"
_SHORT = {reports.PASS: "pass", reports.FINDING: "finding", reports.FAIL: "FAIL", reports.NOT_RUN: "not run",
          reports.NOT_APPLICABLE: "n/a", reports.UNTESTED: "untested"}


def findings_page(adapter: str) -> str:
    return f"findings/{adapter}.md"


def _html(page: str) -> str:
    """The built HTML path of a docs page (use_directory_urls is off: X.md -> X.html)."""
    return page[:-3] + ".html"


def _href(from_page: str, to_page: str, anchor: str = "") -> str:
    return _html(relative(from_page, to_page)) + (f"#{anchor}" if anchor else "")


def _cell_html(implementation, cell, from_page: str, detail_anchor: str = "") -> str:
    title = ""
    if cell.not_run:
        title = "not run: " + "; ".join(sorted(cell.not_run))
    text = _SHORT[cell.status]
    if cell.status == reports.FINDING and detail_anchor:  # the summary: a count, the ids on hover and in the detail row
        title = "findings: " + ", ".join(sorted(cell.findings))
        text = f"finding ×{len(cell.findings)}" if len(cell.findings) > 1 else "finding"
    elif cell.status == reports.FINDING:
        links = [f'<a href="{_href(from_page, findings_page(implementation.adapter), f)}" title="{escape(t)}">{escape(f)}</a>'
                 for f, t in sorted(cell.findings.items())]
        text = "<br>".join(links)
    elif cell.status == reports.FAIL:
        title = "; ".join(f"{n}: {m}" for n, m in cell.failures[:5])
        text = f"FAIL ({len(cell.failures)})"
    elif cell.status == reports.NOT_RUN and cell.not_run:
        text = "not run"
    elif cell.status == reports.PASS and cell.not_run:
        text = "pass*"
        title = "passed where it ran; " + title
    if detail_anchor and cell.status not in (reports.NOT_APPLICABLE, reports.UNTESTED):
        text = f'<a href="#{detail_anchor}">{text}</a>'
    css = cell.status.replace(" ", "-").replace("/", "")
    return f'<td class="ns-{css}" title="{escape(title)}">{text}</td>'


def _clause_cell(clause_id: str, from_page: str, clause_pages: dict) -> str:
    target = clause_pages[clause_id]
    return f'<a href="{_href(from_page, target, clause_id)}">{clause_id}</a>'


def page(implementations: list, clause_pages: dict, spec_version: str) -> str:
    """The Markdown (with raw HTML tables) of the matrix page."""
    untested_rows = dict(untested.rows())
    order = list(clause_pages)  # the clauses of the text this page is built for, in its order
    lines = ["---", "hide:", "  - navigation", "  - toc", "---", "", "# Conformance matrix", "",
             f"Results of `normspec check` for spec {spec_version}, one column per implementation (adapter and "
             "framework version), one row per clause. **pass**: every test citing the clause passed; **finding**: a "
             "test fails as a finding of the adapter's expectations file says (linked); **FAIL**: a failure no finding "
             "explains; **not run**: no test ran (hover for the reason, e.g. no GPU); **pass\\***: passed where it ran, "
             "some devices not run; **n/a**: the clause does not apply to the op; **untested**: no test cites the "
             "clause (the reason is in the row). Each row's anchor is `#matrix-<clause ID>`.", "",
             "Add your own implementation: run `normspec check TARGET --report DIR` and build the site with "
             "`normspec site build SITE --reports DIR ...`.", ""]
    if not implementations:
        lines += ["No reports were given to this build (`normspec site build DIR --reports R1 R2 ...`).", ""]
    lines += ['<div class="ns-matrix" markdown="0"><table>', "<thead><tr><th>clause</th>"]
    lines += [f'<th><a href="#impl-{i.key}">{escape(i.adapter)}</a><br><small>{escape(i.framework)}'
              f'{"<br>" + escape(i.tag) if i.tag else ""}</small></th>' for i in implementations]
    lines += ["</tr></thead><tbody>"]
    for clause_id in order:
        row = [f'<tr id="matrix-{clause_id}"><th>{_clause_cell(clause_id, PAGE, clause_pages)}</th>']
        reason = untested_rows.get(clause_id)
        if reason is not None:  # one cell across the implementations: no test cites it, and why
            row.append(f'<td class="ns-untested" colspan="{max(1, len(implementations))}">untested '
                       f'({escape(reason.kind)}): {escape(reason.reason)}</td>')
        else:
            row += [_cell_html(i, reports.summary(i, clause_id), PAGE, f"{i.key}--{clause_id}") for i in implementations]
        lines.append("".join(row) + "</tr>")
    lines += ["</tbody></table></div>", ""]
    for implementation in implementations:
        lines += _implementation_section(implementation, clause_pages, untested_rows, order)
    return "\n".join(lines) + "\n"


def _implementation_section(implementation, clause_pages, untested_rows, order) -> list:
    devices = ", ".join(f"{d}: {'ran' if reason is None else escape(reason)}"
                        for d, reason in implementation.devices.items())
    ops = reports.ops_of(implementation)
    lines = [f'<h2 id="impl-{implementation.key}">{escape(implementation.label)}</h2>', "",
             f"<p>normspec {escape(implementation.normspec_version)}, spec {escape(implementation.spec_version)}, "
             f"profile {escape(implementation.profile)}; devices: {devices}; "
             f'<a href="{_href(PAGE, findings_page(implementation.adapter))}">findings</a>; '
             f"report: <code>{escape(implementation.source)}</code></p>", "",
             '<div class="ns-matrix" markdown="0"><table><thead><tr><th>clause</th>'
             + "".join(f"<th>{op}</th>" for op in ops) + "</tr></thead><tbody>"]
    for clause_id in order:
        cells = [reports.cell(implementation, clause_id, op, clause_id in untested_rows) for op in ops]
        if all(c.status == reports.NOT_APPLICABLE for c in cells):
            continue
        lines.append(f'<tr id="{implementation.key}--{clause_id}"><th>{_clause_cell(clause_id, PAGE, clause_pages)}'
                     f'</th>' + "".join(_cell_html(implementation, c, PAGE) for c in cells) + "</tr>")
    return lines + ["</tbody></table></div>", ""]


def clause_summary(implementations: list, clause_id: str, page_path: str) -> str:
    """The Markdown line under a clause: who passes, who has findings (linked), who fails or did not run,
    and a link to the clause's matrix row."""
    link = f"[conformance]({relative(page_path, PAGE)}#matrix-{clause_id})"
    entry = dict(untested.rows()).get(clause_id)
    if entry is not None:
        return f"{link}: untested ({entry.kind}: {entry.reason})"
    if not implementations:
        return f"{link}: no reports in this build"
    groups = {}
    for implementation in implementations:
        cell = reports.summary(implementation, clause_id)
        groups.setdefault(cell.status, []).append((implementation, cell))
    parts = []
    for status in (reports.PASS, reports.FINDING, reports.FAIL, reports.NOT_RUN):
        members = groups.get(status, [])
        if not members:
            continue
        shown = []
        for implementation, cell in members:
            name = implementation.short_label
            if status == reports.FINDING:
                target = relative(page_path, findings_page(implementation.adapter))
                ids = sorted(cell.findings)
                refs = f"[{ids[0]}]({target}#{ids[0]})" + (f" and {len(ids) - 1} more" if len(ids) > 1 else "")
                shown.append(f"{name} ({refs})")
            else:
                shown.append(name)
        parts.append(f"**{_SHORT[status]}**: " + "; ".join(shown))
    return f"{link}: " + " · ".join(parts)
