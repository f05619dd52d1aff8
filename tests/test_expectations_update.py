"""`normspec expectations update`: on the example kernel with eps outside the square root, a
narrow run (--ops, --dtypes, -k) removes the listed values whose items passed, proposes
findings for the failures no row lists, and leaves the expectations file as it was."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from normspec import expectations, toml_emit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _mine() -> str:
    """A user's file: the example's finding narrowed to two clauses and two rows (float16
    constant slices, which pass, among them), written as `expectations update` writes."""
    finding = tomllib.loads((EXAMPLES / "eps_outside_expectations.toml").read_text())["finding"][0]
    finding["clauses"] = ["NUM-3.2", "NUM-1.1"]
    finding["matches"] = [
        {"test": "test_constant_slices", "op": "layer_norm", "dtype": ["float16", "float32"], "clause": "NUM-3.2"},
        {"test": "test_forward_matches_reference", "op": "layer_norm", "dtype": "float16", "clause": "NUM-1.1"}]
    return toml_emit.dumps("My kernel's known failures.", "finding", [finding], inline=("matches",))


MINE = _mine()


def update(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES))
    return subprocess.run([sys.executable, "-m", "normspec.cli", "expectations", "update", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_update_prunes_what_passed_and_proposes_what_no_row_lists(tmp_path):
    (tmp_path / "mine.toml").write_text(MINE)
    completed = update("eps_outside_kernel:EpsOutside", "--expectations", "mine.toml", "--ops", "layer_norm",
                       "--dtypes", "float16,float32", "--", "-k",
                       "constant_slices or exact_statistics or forward_matches", cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    assert (tmp_path / "mine.toml").read_text() == MINE
    mine, *proposed = expectations.load_findings(tmp_path / "eps-outside.proposed.toml")
    # float16 constant slices pass (their rounding hides the deviation): that value goes; the
    # forward row's float16 item fails as listed and stays.
    assert [(dict(m.filters), m.clause) for m in mine.matches] == [
        ({"test": ("test_constant_slices",), "op": ("layer_norm",), "dtype": ("float32",)}, "NUM-3.2"),
        ({"test": ("test_forward_matches_reference",), "op": ("layer_norm",), "dtype": ("float16",)}, "NUM-1.1")]
    assert {(f.clauses, m.filters["test"], m.filters["dtype"]) for f in proposed for m in f.matches} == {
        (("NUM-1.1",), ("test_forward_matches_reference",), ("float32",)),
        (("NUM-1.4",), ("test_exact_statistics",), ("float16", "float32"))}
    for finding in proposed:
        assert finding.snippet_status == expectations.NEEDS_REWRITE and finding.upstream == "not reported"
        assert "violated" in finding.title and "run_case" in finding.snippet and finding.versions.get("cpu")
    assert "pruned: finding eps-outside-sigma-plus-eps match 1 (NUM-3.2): removed dtype = float16" in completed.stdout
    assert "the same mechanism?): eps-outside-sigma-plus-eps" in completed.stdout


def test_update_never_writes_the_expectations_file(tmp_path):
    (tmp_path / "mine.toml").write_text(MINE)
    completed = update("eps_outside_kernel:EpsOutside", "--expectations", "mine.toml", "--output", "mine.toml",
                       cwd=tmp_path)
    assert completed.returncode == 2 and "never the file" in completed.stderr
    assert (tmp_path / "mine.toml").read_text() == MINE
