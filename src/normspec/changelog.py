"""The spec's CHANGELOG (spec/CHANGELOG.md) read into releases and a history per clause.

Each section is a release, `## X.Y.Z — date`, or `## Unreleased`; its `Kind:` line names the
kind of release; each change is a bullet that begins with what happened and the clauses it
concerns (`- Added GEN-6: ...`, `- Changed NUM-1.1, NUM-1.4: ...`, `- Editorial NUM-4.3: ...`,
`- Withdrawn ID: ...`, `- Document: ...`). The rendered site shows each clause's history from here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

UNRELEASED = "Unreleased"
ACTIONS = ("Added", "Changed", "Editorial", "Withdrawn")
_ID = r"[A-Z]+-[0-9]+(?:\.[0-9]+)*"
_SECTION = re.compile(r"^## (?:(?P<version>[0-9]+\.[0-9]+\.[0-9]+) — (?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})|"
                      r"(?P<unreleased>Unreleased))\s*$")
_CHANGE = re.compile(rf"^- (?P<action>{'|'.join(ACTIONS)}) (?P<ids>{_ID}(?:, {_ID})*):")
_DOCUMENT = re.compile(r"^- Document:")
_KIND = re.compile(r"^Kind: (.+)$")


@dataclass(frozen=True)
class Change:
    action: str  # one of ACTIONS
    clauses: tuple
    text: str  # the bullet, without its "- Action IDs:" head, joined into one line


@dataclass
class Release:
    version: str  # "X.Y.Z", or UNRELEASED
    date: str | None
    kind: str = ""
    changes: list = field(default_factory=list)

    @property
    def released(self) -> bool:
        return self.version != UNRELEASED


@dataclass
class History:
    """What the CHANGELOG says of one clause: the release that added it and those that changed
    its requirement or only its wording (versions, oldest first; UNRELEASED last)."""
    since: str | None = None
    changed: list = field(default_factory=list)
    edited: list = field(default_factory=list)
    withdrawn: str | None = None


def parse(text: str) -> list:
    """The releases of a CHANGELOG text, newest first, as written. Raises ValueError on a section
    heading of another form or a bullet naming an action it does not know."""
    releases, bullet = [], None  # bullet: (line number, its lines)

    def close():
        nonlocal bullet
        if bullet is not None:
            number, lines = bullet
            joined = " ".join(" ".join(lines).split())
            match = _CHANGE.match(joined)
            if match:
                change = Change(match["action"], tuple(match["ids"].split(", ")), joined[match.end():].strip())
            elif _DOCUMENT.match(joined):
                change = Change("Document", (), joined[len("- Document:"):].strip())
            else:
                raise ValueError(f"CHANGELOG.md line {number}: a change begins with one of {', '.join(ACTIONS)} and "
                                 f"clause IDs ('- Changed NUM-1.1, NUM-1.4: ...') or with '- Document:'; got "
                                 f"{joined[:80]!r}")
            releases[-1].changes.append(change)
        bullet = None

    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            close()
            match = _SECTION.match(line)
            if not match:
                raise ValueError(f"CHANGELOG.md line {number}: section {line!r} is neither '## X.Y.Z — YYYY-MM-DD' "
                                 f"nor '## {UNRELEASED}'")
            releases.append(Release(match["version"] or UNRELEASED, match["date"]))
        elif not releases:
            continue  # the preamble
        elif line.startswith("- "):
            close()
            bullet = (number, [line])
        elif line.startswith("  ") and bullet is not None:
            bullet[1].append(line)
        else:
            close()
            kind = _KIND.match(line)
            if kind:
                releases[-1].kind = kind.group(1)
    close()
    return releases


@lru_cache(maxsize=1)
def releases() -> tuple:
    """The releases of the bundled spec/CHANGELOG.md, newest first."""
    return tuple(parse(files("normspec.spec").joinpath("CHANGELOG.md").read_text(encoding="utf-8")))


def latest_release(entries=None) -> Release | None:
    """The newest released section (not UNRELEASED)."""
    return next((r for r in (releases() if entries is None else entries) if r.released), None)


def unreleased(entries=None) -> Release | None:
    """The UNRELEASED section, if there is one."""
    return next((r for r in (releases() if entries is None else entries) if not r.released), None)


def histories(entries=None) -> dict:
    """{clause ID: History} over every release, oldest first."""
    result = {}
    for release in reversed(list(releases() if entries is None else entries)):
        for change in release.changes:
            for clause_id in change.clauses:
                history = result.setdefault(clause_id, History())
                if change.action == "Added":
                    history.since = history.since or release.version
                elif change.action == "Changed":
                    history.changed.append(release.version)
                elif change.action == "Editorial":
                    history.edited.append(release.version)
                else:
                    history.withdrawn = release.version
    return result


def history_line(history: History | None) -> str:
    """'since 0.1.0; changed in 0.2.0, 0.3.0; edited in 0.4.0', as the site shows it."""
    if history is None or history.since is None:
        return "not recorded in the CHANGELOG"
    parts = [f"since {history.since}"]
    for label, versions in (("changed in", history.changed), ("edited in", history.edited)):
        unique = list(dict.fromkeys(versions))
        if unique:
            parts.append(f"{label} {', '.join(unique)}")
    if history.withdrawn:
        parts.append(f"withdrawn in {history.withdrawn}")
    return "; ".join(parts)
