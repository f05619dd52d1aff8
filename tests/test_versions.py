"""The package version, the spec version, the CHANGELOG and CITATION.cff stay together
(spec/README.md, "Versions"; normspec.versions)."""
import re
import tomllib
from pathlib import Path

import pytest

from normspec import changelog, clauses, versions

ROOT = Path(__file__).resolve().parent.parent


def _package_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_package_carries_the_spec_version():
    assert versions.problems(_package_version(), clauses.spec_version()) == []


@pytest.mark.parametrize("package, spec, changelog_text, broken", [
    ("0.5.0", "0.5.0", "## 0.5.0 — 2027-01-01\n", False),
    ("0.5.0.dev3", "0.4.0", "## Unreleased\n\n## 0.4.0 — 2026-11-26\n", False),
    ("0.5.0.dev3", "0.4.0", "## 0.4.0 — 2026-11-26\n", False),
    ("0.5.0", "0.4.0", "## 0.4.0 — 2026-11-26\n", True),  # a release carries its own spec version
    ("0.5.0", "0.5.0", "## Unreleased\n\n## 0.5.0 — 2027-01-01\n", True),  # released with pending changes
    ("0.4.0.dev1", "0.4.0", "## 0.4.0 — 2026-11-26\n", True),  # a dev version leads past its spec
    ("0.5.0.dev1", "0.5.0", "## 0.4.0 — 2026-11-26\n", True),  # the version line has no release
    ("0.5", "0.5.0", "## 0.5.0 — 2027-01-01\n", True),
])
def test_the_rule(package, spec, changelog_text, broken):
    assert bool(versions.problems(package, spec, changelog.parse(changelog_text))) is broken


def test_changelog_names_each_release_kind_and_every_clause():
    entries = changelog.releases()
    assert all(release.kind for release in entries), "every section has a Kind: line"
    histories = changelog.histories()
    unrecorded = [clause for clause in clauses.index() if clause not in histories or histories[clause].since is None]
    assert not unrecorded, f"clauses the CHANGELOG does not say were added: {unrecorded}"
    named = {clause for release in entries for change in release.changes for clause in change.clauses}
    assert named <= set(clauses.index()), f"CHANGELOG names clauses the spec lacks: {sorted(named - set(clauses.index()))}"


def test_a_tightening_release_says_so():
    """0.4.0 added GEN-6, which tightens conformance (README.md, "Versions")."""
    release = next(r for r in changelog.releases() if r.version == "0.4.0")
    assert "tightens" in release.kind


def test_citation_cites_the_spec_version():
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    spec = clauses.spec_version()
    assert re.search(rf'^version: "{re.escape(spec)}"$', text, re.MULTILINE)
    preferred = text[text.index("preferred-citation:"):]
    assert f'version: "{spec}"' in preferred and f"normspec {spec}" in preferred
    # The project has no public address yet: repository-code and url are added when it does.
    for key in ("license:", "date-released:"):
        assert re.search(rf"^{key}", text, re.MULTILINE), key
    release = changelog.latest_release()
    assert f"date-released: {release.date}" in text


def test_citation_is_valid_cff():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert data["cff-version"] == "1.2.0"
    assert data["preferred-citation"]["type"] in ("standard", "software", "manual")
    assert {"title", "authors", "version"} <= set(data["preferred-citation"])
