"""The spec text: its clause index, its worked examples (executed against the reference),
its version, and the citations made by tests and code."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import normspec
from normspec import clauses, reference, registry

ROOT = Path(__file__).resolve().parent.parent
OPS_WITH_SECTIONS = {row.prefix: name for table in (registry.OPS, registry.SCALERS, registry.DATA_PARALLEL)
                     for name, row in table.items()}


def test_every_op_and_the_numerics_rules_have_clauses():
    prefixes = {clause_id.split("-")[0] for clause_id in clauses.index()}
    assert set(OPS_WITH_SECTIONS) | {"GEN", "NORM", "NUM", "ERR", "GRAD", "SCALE"} <= prefixes


def test_every_cited_clause_exists():
    """Every clause ID that code, tests or expectations cite is defined in the spec."""
    cited = set()
    pattern = re.compile(r"\b(" + registry.CLAUSE_ID + r")\b")
    for folder in ("src", "reference", "adapters", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".toml") and path.is_file():
                cited |= set(pattern.findall(path.read_text(encoding="utf-8")))
    missing = sorted(cited - set(clauses.index()))
    assert not missing, f"cited but not defined in spec/: {missing}"


def test_spec_version_is_cited_consistently():
    version = clauses.spec_version()
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert f'version: "{version}"' in citation
    assert f"## {version}" in (ROOT / "spec" / "CHANGELOG.md").read_text(encoding="utf-8")


def _examples():
    return [pytest.param(tomllib.loads(text), id=f"{document}:{tomllib.loads(text)['op']}")
            for document, text in clauses.examples()]


def test_spec_has_worked_examples():
    assert {example.values[0]["op"] for example in _examples()} >= {"batch_norm", "layer_norm", "rms_norm",
                                                                     "standard_scaler", "minmax_scaler"}


def _scaler_example(example):
    """A fitted scaler's example: its statistics and its transform of `x` are the reference's."""
    chunks = [np.array(chunk, dtype=np.float64) for chunk in example["chunks"]]
    if example["op"] == "minmax_scaler":
        fitted = reference.minmax_scaler(chunks, feature_range=example["feature_range"])
        np.testing.assert_array_equal(fitted.data_min, example["data_min"])
        np.testing.assert_array_equal(fitted.data_max, example["data_max"])
    else:
        fitted = reference.standard_scaler(chunks, ddof=example["ddof"])
        np.testing.assert_allclose(fitted.mean + fitted.mean_residual, example["mean"], rtol=5e-9)
        np.testing.assert_allclose(fitted.variance, example["variance"], rtol=5e-9)
    np.testing.assert_allclose(fitted.scale, example["scale"], rtol=5e-9)
    np.testing.assert_allclose(fitted.transform(np.array(example["x"]), exact=True), example["output"], rtol=5e-9)


@pytest.mark.parametrize("example", _examples())
def test_worked_example_matches_reference(example):
    """The numbers printed in the spec are what the reference computes (so they cannot drift)."""
    if "chunks" in example:
        _scaler_example(example)
        return
    x = np.array(example["x"], dtype=np.float64)
    weight, bias = (np.array(example[k]) if k in example else None for k in ("weight", "bias"))
    op = example["op"]
    if op == "batch_norm":
        result, steps = reference.batch_norm(
            x, weight, bias, np.array(example["running_mean"]), np.array(example["running_var"]),
            training=example["training"], momentum=example["momentum"], eps=example["eps"],
            running_var_estimator=example["running_var_estimator"], exact=True, return_steps=True)
        output, per_feature = result.output, lambda a: a[0]
        np.testing.assert_allclose(result.running_mean, example["new_running_mean"], rtol=5e-9)
        np.testing.assert_allclose(result.running_var, example["new_running_var"], rtol=5e-9)
    else:
        output, steps = getattr(reference, op)(x, example.get("normalized_shape", x.shape[-1:]), weight,
                                               bias, eps=example["eps"], exact=True, return_steps=True)
        per_feature = lambda a: a[:, 0]
    np.testing.assert_allclose(output, example["output"], rtol=5e-9, atol=5e-10)
    np.testing.assert_allclose(per_feature(steps.inverse_std), example["inverse_std"], rtol=5e-9)
    if "mean" in example:
        np.testing.assert_allclose(per_feature(steps.mean), example["mean"], rtol=5e-9)
    second = example.get("variance", example.get("mean_square"))
    np.testing.assert_allclose(per_feature(steps.variance), second, rtol=5e-9)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "normspec.cli", *args], capture_output=True, text=True)


def test_cli_lists_and_prints_clauses():
    listing = _cli("spec", "--list")
    assert listing.returncode == 0
    assert len(listing.stdout.splitlines()) == len(clauses.index())
    assert "NUM-1.1" in listing.stdout and "RMS-3" in listing.stdout
    shown = _cli("spec", "NUM-1.1")
    assert shown.returncode == 0 and "[NUM-1.1]" in shown.stdout and clauses.spec_version() in shown.stdout


def test_cli_unknown_clause_is_a_usage_error():
    missing = "NUM-" + "99"  # built, so that the citation check above does not read it as a citation
    shown = _cli("spec", missing)
    assert shown.returncode == 2 and f"no clause '{missing}'" in shown.stderr and "Traceback" not in shown.stderr


def test_cli_unknown_adapter_is_a_usage_error():
    checked = _cli("check", "no-such-adapter")
    assert checked.returncode == 2 and "unknown adapter" in checked.stderr and "Traceback" not in checked.stderr


def test_version_reports_package_and_spec():
    assert normspec.__version__ != "0+unknown"
    assert clauses.spec_version() in _cli("--version").stdout
