"""`normspec findings`: an expectations file's findings as Markdown bug reports (title,
versions, snippet, observed, expected, each clause with its rule, upstream status; the
adapter's own findings last) or as JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "eps_outside_expectations.toml"


def findings(*args):
    return subprocess.run([sys.executable, "-m", "normspec.cli", "findings", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_markdown_reads_as_a_bug_report(tmp_path):
    own = EXAMPLE.read_text().replace('id = "eps-outside-sigma-plus-eps"', 'id = "eps-outside-own"').replace(
        'belongs_to = "framework"', 'belongs_to = "adapter"').replace(
        'title = "LayerNorm divides', 'title = "The adapter divides')
    (tmp_path / "both.toml").write_text(EXAMPLE.read_text() + own)
    completed = findings(tmp_path / "both.toml")
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    for expected in ("## 1. LayerNorm divides by sigma + eps instead of sqrt(sigma^2 + eps)",
                     "**Versions.** CPU: eps_outside_kernel (numpy 2.4.6)", "```python\nimport numpy as np",
                     "**Observed:** `y[0] = -0.999600172`", "**Expected:** -0.99992001 within 1.32e-05",
                     "- **NUM-1.4** Exact-statistics inputs: ", "upstream: not reported"):
        assert expected in text
    framework, own_part = text.split("# The adapter's own composition; not for upstream")
    assert "## 2. The adapter divides" in own_part and "The adapter divides" not in framework


def test_one_finding_as_json():
    completed = findings(EXAMPLE, "--id", "eps-outside-sigma-plus-eps", "--format", "json")
    assert completed.returncode == 0, completed.stderr
    (record,) = json.loads(completed.stdout)["findings"]
    assert record["clauses"][0]["id"] == "NUM-1.1" and record["clauses"][0]["rule"].startswith("Error bound: ")
    # Two rows name no dtype: every dtype is affected.
    assert record["affected"] == {"ops": ["layer_norm"], "dtypes": ["any"], "devices": ["any"]}


def test_an_unknown_id_names_the_ids_there_are():
    completed = findings(EXAMPLE, "--id", "no-such-finding")
    assert completed.returncode == 2 and "eps-outside-sigma-plus-eps" in completed.stderr
