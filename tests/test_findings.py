"""The built-in expectations files as bug reports that run: every file loads, finding ids are
unique across the files, and every finding's snippet, run on its own, prints the observed value
it states. Each tox environment runs the snippets of its own frameworks: a snippet whose
framework is not importable here, or that needs CUDA on a machine without a GPU, is reported as
not run, with the reason."""
from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from normspec import clauses, expectations
from normspec.adapters import BUILTIN

EXPECTATIONS = Path(__file__).resolve().parents[1] / "adapters" / "expectations"
# The modules an adapter's snippets need beyond those they import (a Keras snippet picks its backend by name).
FRAMEWORK = {"torch": {"torch"}, "torch-channels-last": {"torch"}, "torch-autocast": {"torch"}, "flax-linen": {"flax"}, "flax-nnx": {"flax"}, "flax-linen-sync": {"flax"}, "flax-nnx-sync": {"flax"},
             "keras": {"tensorflow"}, "tf-nn": {"tensorflow"}, "onnx-reference": {"onnx"},
             "onnxruntime": {"onnxruntime"}, "equinox": {"equinox"}, "equinox-bn-batch": {"equinox"}, "equinox-sync": {"equinox"},
             "keras-jax": {"keras", "jax"}, "keras-torch": {"keras", "torch"}, "sklearn": {"sklearn"},
             "keras-normalization": {"keras", "tensorflow"}, "keras-sync": {"keras", "tensorflow"}}
SNIPPET_TIMEOUT_S = 300


def _adapters_with_files() -> list:
    return [adapter_id for adapter_id in BUILTIN if expectations.builtin_path(adapter_id) is not None]


def _findings() -> list:
    return [pytest.param(adapter_id, finding, id=finding.id)
            for adapter_id in _adapters_with_files() for finding in expectations.builtin_findings(adapter_id)]


def snippet_modules(snippet: str) -> set:
    """The top-level modules a snippet imports, standard library excepted (empty if it does not parse)."""
    try:
        tree = ast.parse(snippet)
    except SyntaxError:
        return set()
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {name.split(".")[0] for name in names} - set(sys.stdlib_module_names)


@lru_cache(maxsize=1)
def _cuda_device() -> bool:
    """Whether this machine has an NVIDIA GPU (asked of the driver, without importing a framework)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return False
    listed = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=60)
    return listed.returncode == 0 and "GPU" in listed.stdout


@pytest.mark.parametrize("adapter_id", _adapters_with_files())
def test_every_expectations_file_loads(adapter_id):
    findings = expectations.builtin_findings(adapter_id)
    assert findings and all(finding.matches for finding in findings)


def test_finding_ids_are_unique_across_the_files():
    seen = {}
    for adapter_id in _adapters_with_files():
        for finding in expectations.builtin_findings(adapter_id):
            assert finding.id not in seen, f"{finding.id} is in {seen.get(finding.id)} and {adapter_id}.toml"
            seen[finding.id] = f"{adapter_id}.toml"


def test_every_cited_clause_is_a_clause_of_the_spec():
    known = clauses.index()
    for adapter_id in _adapters_with_files():
        for finding in expectations.builtin_findings(adapter_id):
            assert set(finding.clauses) <= set(known), finding.id
            assert {match.clause for match in finding.matches} <= set(finding.clauses), finding.id


def test_every_case_file_a_snippet_loads_is_shipped():
    for adapter_id in _adapters_with_files():
        for finding in expectations.builtin_findings(adapter_id):
            for name in re.findall(r"""["'](cases/[^"']+)["']""", finding.snippet):
                assert (EXPECTATIONS / name).is_file(), f"{finding.id}: {name} is not in adapters/expectations/"


def test_the_example_in_format_md_is_a_valid_file(tmp_path):
    text = (EXPECTATIONS / "FORMAT.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", text, re.DOTALL).group(1)
    (tmp_path / "example.toml").write_text(example, encoding="utf-8")
    (finding,) = expectations.load_findings(tmp_path / "example.toml")
    assert len(finding.matches) == 2


@pytest.mark.parametrize("output, shows", [
    ("y[0, 1] = 39.5284729, dx[0, 1] = 61671.4844", True),  # verbatim
    ("y[0, 1] = 39.5284691, dx[0, 1] = 61672.4688\n", True),  # another machine's last digits
    ("dx[0, 0] = 6.13317408e-19", False),  # a different quantity is not the same text
    ("y[0, 1] = 39.5284729, dx[0, 1] = 61771.4844", False),  # a number 0.16% off
    ("y[0, 2] = 39.5284729, dx[0, 1] = 61671.4844", False),  # another element
    ("use y[0, 1] = nan, dx[0, 1] = 61671.4844", False),
])
def test_observed_rtol_allows_another_machine_s_last_digits(output, shows):
    assert expectations.output_shows_observed(output, "y[0, 1] = 39.5284729, dx[0, 1] = 61671.4844", 1e-3) is shows


def test_observed_is_verbatim_without_rtol_and_compares_nan_and_exponents_with_it():
    assert not expectations.output_shows_observed("y[0, 1] = 39.5284691", "y[0, 1] = 39.5284729")
    assert expectations.output_shows_observed("dx[0, 0] = 6.13317408e-19; x", "dx[0, 0] = 6.1331746e-19", 1e-3)
    assert expectations.output_shows_observed("mean = nan, var = inf", "mean = nan, var = inf", 1e-3)
    assert not expectations.output_shows_observed("mean = nan, var = 1.0", "mean = nan, var = inf", 1e-3)


@pytest.mark.parametrize("adapter_id, finding", _findings())
def test_snippet_prints_the_observed_value(adapter_id, finding):
    needed = sorted(FRAMEWORK.get(adapter_id, {adapter_id}) | snippet_modules(finding.snippet) - {"normspec"})
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"not run: needs {', '.join(missing)}")
    where = f"{finding.path} finding {finding.id}"
    if finding.snippet_status == expectations.NEEDS_REWRITE:
        pytest.fail(f"{where}: snippet_status = \"{expectations.NEEDS_REWRITE}\": rewrite the snippet to use "
                    f"{', '.join(needed)} and NumPy only, check that it prints `observed`, and delete snippet_status",
                    pytrace=False)
    if "normspec" in snippet_modules(finding.snippet) or re.search(r"\bnormspec\b", finding.snippet):
        pytest.fail(f"{where}: the snippet uses normspec; a bug report's snippet uses the framework and NumPy only",
                    pytrace=False)
    if finding.device == "cuda" and not _cuda_device():
        pytest.skip("not run: needs a CUDA device")
    completed = subprocess.run([sys.executable, "-c", finding.snippet], cwd=EXPECTATIONS, capture_output=True,
                               text=True, timeout=SNIPPET_TIMEOUT_S)
    if not expectations.output_shows_observed(completed.stdout, finding.observed, finding.observed_rtol):
        tolerance = "verbatim" if finding.observed_rtol is None else f"each number within {finding.observed_rtol}"
        pytest.fail(f"{where}: the snippet's output does not contain observed = {finding.observed!r} ({tolerance}; "
                    f"exit status "
                    f"{completed.returncode})\n--- stdout ---\n{completed.stdout[-3000:]}\n--- stderr ---\n"
                    f"{completed.stderr[-3000:]}", pytrace=False)
