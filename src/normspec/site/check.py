"""`normspec site check DIR`: the built site's promises, read from its HTML (no network): every
clause ID of each version folder's text is an element id on its document's page, and every internal
link (href and src, with its fragment) resolves to a file of the site and an id on that page."""
from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag == "a" and attributes.get("name"):
            self.ids.add(attributes["name"])
        for name in ("href", "src"):
            if attributes.get(name) and not (tag == "link" and attributes.get("rel") in ("canonical", "alternate")):
                self.links.append(attributes[name])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def _internal(link: str) -> bool:
    parts = urlsplit(link)
    return not (parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")))


def check_links(root: Path) -> list:
    """Every broken internal link under `root`: (page, link, why)."""
    root = Path(root)
    # 404.html is served by a web server for any missing path, so mkdocs writes its links from the site root.
    pages = {p: None for p in root.rglob("*.html") if p.name != "404.html"}
    problems = []

    def ids_of(path: Path) -> set:
        if pages.get(path) is None:
            pages[path] = _parse(path)
        return pages[path].ids

    for page in list(pages):
        parsed = pages[page] or _parse(page)
        pages[page] = parsed
        for link in parsed.links:
            if not _internal(link):
                continue
            parts = urlsplit(link)
            target = page if not parts.path else Path(posixpath.normpath(
                posixpath.join(page.parent.as_posix(), unquote(parts.path))))
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append((page.relative_to(root).as_posix(), link, "no such file"))
                continue
            if parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids_of(target):
                problems.append((page.relative_to(root).as_posix(), link, f"no id {parts.fragment!r} on that page"))
    return problems


def check_anchors(version_dir: Path, clause_pages: dict) -> list:
    """Every clause whose id is missing from its page: (clause ID, page)."""
    missing = []
    cache = {}
    for clause_id, page in clause_pages.items():
        html = Path(version_dir) / (page[:-3] + ".html")
        if html not in cache:
            cache[html] = _parse(html).ids if html.is_file() else set()
        if clause_id not in cache[html]:
            missing.append((clause_id, page))
    return missing


def check(out) -> list:
    """Every problem of a built site as text: per version folder (one with a clauses.json, the index
    of the text it was built from, written by the build), the clause anchors, and the links."""
    import json
    out = Path(out)
    problems = []
    folders = [p for p in sorted(out.iterdir()) if (p / "clauses.json").is_file()] if out.is_dir() else []
    if not folders:
        return [f"{out}: no version folder with a clauses.json (build it with `normspec site build {out}`)"]
    for folder in folders:
        index = json.loads((folder / "clauses.json").read_text(encoding="utf-8"))
        problems += [f"{folder.name}: clause {clause_id} has no anchor #{clause_id} on {page[:-3]}.html"
                     for clause_id, page in check_anchors(folder, index)]
    problems += [f"{page}: broken link {link!r} ({why})" for page, link, why in check_links(out)]
    return problems
