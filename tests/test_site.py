"""The rendered site (normspec.site): clause anchors that are the clause IDs, each clause's history
and conformance, the matrix from report.json files with linked findings and not-run reasons, the
accuracy figures, offline assets, and the checker that every anchor and internal link resolves.

The full build needs the `site` extra (mkdocs-material, django-static-mathjax, matplotlib) and is
skipped without it; `tox -e site` runs it."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from normspec import clauses
from normspec.site import check, pages, reports

ROOT = Path(__file__).resolve().parent.parent


def _report(directory: Path) -> Path:
    """A small report.json as `normspec check --report` writes it: a pass, a finding (new message
    form), a failure, a device not run, for the torch adapter."""
    from normspec.expectations import builtin_findings
    finding = builtin_findings("torch")[0]
    results = [
        {"adapter": "torch", "op": "layer_norm", "dtype": "float32", "device": "cpu", "test": "test_forward_matches_reference",
         "nodeid": "a[torch-layer_norm-float32-cpu]", "status": "pass", "failed_clause": None, "clauses": ["NUM-1.1", "GEN-3"],
         "message": ""},
        {"adapter": "torch", "op": "batch_norm", "dtype": "float16", "device": "cpu", "test": "test_forward_matches_reference",
         "nodeid": "a[torch-batch_norm-float16-cpu]", "status": "expected-failure", "failed_clause": "NUM-1.1",
         "clauses": ["NUM-1.1"], "message": f"expected failure NUM-1.1: {finding.title} (/x/torch.toml finding {finding.id})"},
        {"adapter": "torch", "op": "rms_norm", "dtype": "float32", "device": "cpu", "test": "test_errors",
         "nodeid": "b[torch-rms_norm-float32-cpu]", "status": "fail", "failed_clause": "ERR-1.3", "clauses": ["ERR-1.3"],
         "message": "ERR-1.3 violated: accepted eps=nan"},
        {"adapter": "torch", "op": "layer_norm", "dtype": "float32", "device": "cuda", "test": "test_forward_matches_reference",
         "nodeid": "a[torch-layer_norm-float32-cuda]", "status": "not-run", "failed_clause": None, "clauses": ["NUM-1.1"],
         "message": "Skipped: not run: cuda: not available (no GPU)"},
    ]
    document = {"normspec_version": "0.5.0.dev0", "spec_version": clauses.spec_version(), "profile": "ci",
                "adapters": [{"id": "torch", "framework": "torch 9.9.9", "devices": {"cpu": None, "cuda": "no GPU"}}],
                "results": results}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(document), encoding="utf-8")
    return directory, finding.id


def test_anchor_is_the_clause_id_whatever_the_title():
    for title in ("Exponential running update", "A new title"):
        rendered = pages.render(f"# BatchNorm\n\n### [BN-4.1] {title}\n\nText citing BN-4.2 and $x_{{BN-1}}$.\n",
                                "ops/batch_norm.md", {"BN-4.1": "ops/batch_norm.md", "BN-4.2": "ops/batch_norm.md",
                                                      "BN-1": "ops/batch_norm.md"})
        assert f"### [BN-4.1] {title} {{#BN-4.1}}" in rendered
        assert "[BN-4.2](#BN-4.2)" in rendered and "$x_{BN-1}$" in rendered  # math keeps its text


def test_clause_ids_link_across_pages_but_not_in_code():
    line = pages.link_clause_ids("see NUM-1.1, `NUM-1.2` and [NUM-1.3](x.md)", "ops/batch_norm.md",
                                 {"NUM-1.1": "numerics.md", "NUM-1.2": "numerics.md", "NUM-1.3": "numerics.md"})
    assert line == "see [NUM-1.1](../numerics.md#NUM-1.1), `NUM-1.2` and [NUM-1.3](x.md)"


def test_report_cells(tmp_path):
    directory, finding_id = _report(tmp_path / "r")
    [torch] = reports.load([directory])
    assert reports.cell(torch, "NUM-1.1", "layer_norm").status == reports.PASS
    assert reports.cell(torch, "NUM-1.1", "layer_norm").not_run == {"cuda: not available (no GPU)"}
    assert reports.cell(torch, "NUM-1.1", "batch_norm").findings.keys() == {finding_id}
    assert reports.cell(torch, "ERR-1.3", "rms_norm").status == reports.FAIL
    assert reports.cell(torch, "BN-4.1", "layer_norm").status == reports.NOT_APPLICABLE
    assert reports.summary(torch, "NUM-1.1").status == reports.FINDING


def test_link_checker_reports_missing_files_and_fragments(tmp_path):
    (tmp_path / "a.html").write_text('<h2 id="X-1">x</h2><a href="b.html#Y-2">b</a><a href="c.html">c</a>'
                                     '<a href="#X-1">self</a><a href="https://example.org/">out</a>')
    (tmp_path / "b.html").write_text('<h2 id="Y-1">y</h2>')
    problems = check.check_links(tmp_path)
    assert sorted((link, why.split()[0]) for _, link, why in problems) == [("b.html#Y-2", "no"), ("c.html", "no")]


def _site_extra():
    for module in ("mkdocs", "material", "mathjax", "matplotlib"):
        pytest.importorskip(module, reason=f"the site extra (pip install 'normspec[site]') provides {module}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _site_extra()
    work = tmp_path_factory.mktemp("site")
    directory, finding_id = _report(work / "report")
    out = work / "out"
    command = [sys.executable, "-m", "normspec.cli", "site", "build", str(out), "--reports", str(directory)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    folders = [p for p in out.iterdir() if (p / "clauses.json").is_file()]
    assert len(folders) == 1
    return out, folders[0], finding_id


def test_every_clause_anchor_and_link_resolves(site):
    out, folder, _ = site
    assert check.check(out) == []
    index = json.loads((folder / "clauses.json").read_text())
    assert index.keys() == clauses.index().keys()


def test_num_1_1_shows_rule_history_conformance_and_plot(site):
    _, folder, finding_id = site
    html = (folder / "numerics.html").read_text()
    section = html[html.index('id="NUM-1.1"'):html.index('id="NUM-1.2"')]
    assert "since 0.1.0; changed in 0.2.0, 0.3.0" in section
    assert 'href="matrix.html#matrix-NUM-1.1"' in section
    assert f'findings/torch.html#{finding_id}' in section
    assert "accuracy/why.png" in section
    assert (folder / "accuracy" / "why.png").is_file()


def test_matrix_links_findings_and_says_why_not_run(site):
    _, folder, finding_id = site
    matrix = (folder / "matrix.html").read_text()
    assert 'id="matrix-NUM-1.1"' in matrix and 'id="matrix-GEN-1"' in matrix
    assert f'href="findings/torch.html#{finding_id}"' in matrix
    assert "cuda: not available (no GPU)" in matrix
    assert "definitional" in matrix[matrix.index('id="matrix-GEN-1"'):]  # an untested row says why
    assert f'id="{finding_id}"' in (folder / "findings" / "torch.html").read_text()


def test_site_is_offline(site):
    out, folder, _ = site
    assert (folder / "mathjax" / "tex-svg.js").is_file()
    for html in folder.rglob("*.html"):
        text = html.read_text()
        external = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?:[^"]+)"', text)
        assert not external, f"{html.name} loads {external}"
    assert "fonts.googleapis" not in (folder / "index.html").read_text()


def test_versions_index_and_latest(site):
    out, folder, _ = site
    versions = json.loads((out / "versions.json").read_text())
    assert folder.name in [v["version"] for v in versions]
    assert "url=" in (out / "latest" / "index.html").read_text()


def test_accuracy_command_draws_figures(tmp_path):
    pytest.importorskip("matplotlib")
    command = [sys.executable, "-m", "normspec.cli", "accuracy", "numpy",
               "normspec.zoo.mutants_numerics:OnePassVariance", "--ops", "batch_norm", "--dtypes", "float32",
               "--out", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "why.png").is_file() and (tmp_path / "kappa-numpy.png").is_file()
    points = json.loads((tmp_path / "accuracy.json").read_text())
    one_pass = [p for p in points if p["target"] == "mutant-one-pass-variance" and p["sweep"] == "kappa"]
    two_pass = [p for p in points if p["target"] == "numpy" and p["sweep"] == "kappa"]
    assert max(p["ratio"] for p in one_pass) > 1 > max(p["ratio"] for p in two_pass)
