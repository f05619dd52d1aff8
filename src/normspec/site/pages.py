"""Spec Markdown to the Markdown the site is built from: each clause heading gets its ID as an
explicit anchor (`## [BN-4.1] Title {#BN-4.1}`: stable however the title changes), a line with its
history (CHANGELOG) and its conformance (matrix row), and every clause ID in the running text
becomes a link to that clause's anchor. Math, code and headings are left as they are."""
from __future__ import annotations

import posixpath
import re

from normspec.clauses import _HEADING  # the one definition of a clause heading
from normspec.registry import CLAUSE_ID

_ID_IN_TEXT = re.compile(r"(?<![\w#-])(" + CLAUSE_ID + r")(?![\w-]|\.[0-9])")
# Spans that keep their text: inline code, display and inline math, Markdown links and images.
_PROTECTED = re.compile(r"(`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|!?\[[^\]]*\]\([^)]*\)|<[^>]+>)", re.DOTALL)


def relative(from_page: str, to_page: str) -> str:
    """The relative link from one docs page (e.g. 'ops/batch_norm.md') to another."""
    return posixpath.relpath(to_page, posixpath.dirname(from_page) or ".")


def link_clause_ids(text: str, page: str, clause_pages: dict, own: str | None = None) -> str:
    """Clause IDs in a line of running text as links to their anchors; `own` (the clause whose
    text this is) stays plain. Code, math, links and raw HTML keep their text."""
    def linked(match):
        clause_id = match.group(1)
        target = clause_pages.get(clause_id)
        if target is None or clause_id == own:
            return clause_id
        href = f"#{clause_id}" if target == page else f"{relative(page, target)}#{clause_id}"
        return f"[{clause_id}]({href})"

    parts = _PROTECTED.split(text)
    return "".join(part if index % 2 else _ID_IN_TEXT.sub(linked, part) for index, part in enumerate(parts))


def render(text: str, page: str, clause_pages: dict, meta=None) -> str:
    """The site Markdown of one spec document. `meta(clause_id, page)` returns the Markdown block
    shown under the clause's heading (history, conformance, plots), or '' for none. Clause IDs are
    linked paragraph by paragraph, so that a code span or formula broken across lines keeps its text."""
    out, paragraph, fenced, display_math, current = [], [], False, False, None

    def flush():
        if paragraph:
            out.append(link_clause_ids("\n".join(paragraph), page, clause_pages, own=current))
            paragraph.clear()

    for line in text.splitlines():
        if line.startswith("```") or fenced:
            flush()
            fenced = fenced != line.startswith("```")
            out.append(line)
            continue
        match = None if display_math else _HEADING.match(line)
        if match:
            flush()
            if match.group(2):
                hashes, clause_id, title = match.group(1), match.group(2), match.group(3)
                current = clause_id
                out.append(f"{hashes} [{clause_id}] {title} {{#{clause_id}}}")
                block = meta(clause_id, page) if meta else ""
                if block:
                    out += ["", block]
            else:
                out.append(line)
            continue
        if line.count("$$") % 2 or display_math:
            flush()
            display_math = display_math != bool(line.count("$$") % 2)
            out.append(line)
            continue
        # A blank line ends a paragraph; an indented line is a code block (the README's heading
        # example; list continuations use two spaces).
        if not line.strip() or line.startswith("    "):
            flush()
            out.append(line)
            continue
        paragraph.append(line)
    flush()
    return "\n".join(out) + "\n"
