"""The gate as a user runs it: `normspec check` in a subprocess, from a directory outside
the source tree, against the examples in examples/ and against faulty adapters written
here. Every run is narrow (one or two ops, float32, a few examples) so that the file
stays fast; the runs that start the suite go two at a time.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NARROW = ["--dtypes", "float32", "--examples", "3"]


def gate(*args, cwd, pythonpath=()):
    """`normspec check ARGS` as a user runs it, from `cwd`, with `pythonpath` (and examples/)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(EXAMPLES)]))
    return subprocess.run([sys.executable, "-m", "normspec.cli", "check", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def records(report_dir, **where):
    results = json.loads((Path(report_dir) / "report.json").read_text())["results"]
    return [r for r in results if all(r.get(k) == v for k, v in where.items())]


# Adapters with one fault each, in layer_norm unless the fault needs another op; the rest is
# the conforming example kernel.
FAULTY = '''
import dataclasses, os, time
import numpy as np
from welford_kernel import WelfordKernel

class Raises(WelfordKernel):
    id = "raises"
    def layer_norm(self, x, **kwargs):
        raise RuntimeError("kernel launch failed")

class ReturnsNone(WelfordKernel):
    id = "returns-none"
    def layer_norm(self, x, **kwargs):
        return None

class WrongShape(WelfordKernel):
    id = "wrong-shape"
    def layer_norm(self, x, **kwargs):
        return super().layer_norm(x, **kwargs)[..., :-1]

class Float64(WelfordKernel):
    id = "float64"
    def layer_norm(self, x, **kwargs):
        return super().layer_norm(x, **kwargs).astype(np.float64)

class ReturnsNaN(WelfordKernel):
    id = "returns-nan"
    def layer_norm(self, x, **kwargs):
        return np.full_like(super().layer_norm(x, **kwargs), np.nan)

class Aborts(WelfordKernel):
    id = "aborts"
    def layer_norm(self, x, **kwargs):
        os.abort()

class OffOnCuda(WelfordKernel):  # a "GPU" that is the CPU kernel scaled by 1.001
    id = "off-on-cuda"
    capabilities = dataclasses.replace(WelfordKernel.capabilities, devices=("cpu", "cuda"))
    def device_status(self):
        return {"cpu": None, "cuda": None}
    def layer_norm(self, x, *, device, **kwargs):
        y = super().layer_norm(x, device="cpu", **kwargs)
        return (y * np.float32(1.001)).astype(y.dtype) if device == "cuda" else y

class EnvironmentProbe(WelfordKernel):  # reports what `--workers` put in its environment
    id = "environment-probe"
    def framework_version(self):
        return f"XLA_PYTHON_CLIENT_PREALLOCATE={os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE')}"

class Sleeps(WelfordKernel):  # in BatchNorm's single-value test, which Hypothesis does not shrink
    id = "sleeps"
    def batch_norm(self, x, **kwargs):
        time.sleep(3)
        return super().batch_norm(x, **kwargs)
'''

# fault -> (the `normspec check` selection, the op whose records fail, what their message says)
FAULTS = {
    "Raises": ([], "layer_norm", "raised RuntimeError on a valid input: kernel launch failed"),
    "ReturnsNone": ([], "layer_norm", "returned None instead of an array"),
    "WrongShape": ([], "layer_norm", "has shape"),
    "Float64": ([], "layer_norm", "has dtype float64, expected the input dtype float32"),
    "ReturnsNaN": ([], "layer_norm", "observed nan"),
    # A crash ends the worker; a new one runs the rest, so rms_norm still has results.
    "Aborts": (["--ops", "layer_norm,rms_norm", "--", "-k", "forward_matches or exact_statistics"], "layer_norm",
               "crashed"),
    # The device test holds CUDA to the reference and quotes the CPU's output of the same case.
    "OffOnCuda": (["--ops", "layer_norm", "--", "-k", "cuda_meets"], "layer_norm", "the cpu output of this case at"),
    "Sleeps": (["--ops", "batch_norm,layer_norm", "--call-timeout", "0.5", "--",
                "-k", "(single_value_channel and not leaves_state) or (forward_matches and layer_norm)"], "batch_norm",
               "did not return within 0.5 s"),
}
DEFAULT_SELECTION = ["--ops", "layer_norm", "--", "-k", "forward_matches"]

STALE = '''
[[finding]]
id = "welford-listed-but-passes"
title = "listed, but the kernel passes"
mechanism = "listed, but the kernel passes"
clauses = ["NUM-1.4"]
versions = { cpu = "welford-kernel 1.0" }
belongs_to = "framework"
upstream = "not reported"
snippet = "print('-')"
observed = "-"
expected = "-"
matches = [{ test = "test_exact_statistics", op = "layer_norm", dtype = "float32", clause = "NUM-1.4" }]
'''

# The stale finding marked intermittent (a failure that does not show in every run), and a
# decoy finding for the same test citing another clause ahead of the eps-outside finding.
INTERMITTENT = STALE.replace('clause = "NUM-1.4" }', 'clause = "NUM-1.4", intermittent = true }')
DECOY = STALE.replace('"NUM-1.4"', '"NUM-1.1"').replace("welford-kernel", "eps-outside").replace(
    "welford-listed", "eps-outside-decoy")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The runs that start the suite, two at a time: name -> (CompletedProcess, report dir)."""
    root = tmp_path_factory.mktemp("gate")
    (root / "faulty.py").write_text(FAULTY)
    (root / "stale.toml").write_text(STALE)
    (root / "intermittent.toml").write_text(INTERMITTENT)
    (root / "two-entries.toml").write_text(DECOY + (EXAMPLES / "eps_outside_expectations.toml").read_text())
    plans = {
        "conforming": ["welford_kernel:WelfordKernel", "--ops", "layer_norm,batch_norm", *NARROW, "--",
                       "-k", "forward_matches or exact_statistics or (single_value_channel and not leaves_state)"],
        "deviating": ["eps_outside_kernel:EpsOutside", *NARROW, "--", "-k", "exact_statistics"],
        "deviating-stop-at-first": ["eps_outside_kernel:EpsOutside", *NARROW, "--workers", "2", "--", "-x",
                                    "-k", "exact_statistics"],
        "deviating-long-traceback": ["eps_outside_kernel:EpsOutside", *NARROW, "--ops", "layer_norm", "--",
                                     "-k", "exact_statistics", "--tb=long"],
        "deviating-expected": ["eps_outside_kernel:EpsOutside", *NARROW, "--expectations",
                               EXAMPLES / "eps_outside_expectations.toml", "--", "-k", "exact_statistics"],
        "stale": ["welford_kernel:WelfordKernel", "--ops", "layer_norm", *NARROW, "--expectations",
                  root / "stale.toml", "--", "-k", "exact_statistics"],
        "intermittent": ["welford_kernel:WelfordKernel", "--ops", "layer_norm", *NARROW, "--expectations",
                         root / "intermittent.toml", "--", "-k", "exact_statistics"],
        "two-entries": ["eps_outside_kernel:EpsOutside", *NARROW, "--expectations", root / "two-entries.toml",
                        "--", "-k", "exact_statistics"],
        "workers": ["faulty:EnvironmentProbe", "--ops", "layer_norm", *NARROW, "--workers", "2", "--",
                    "-k", "forward_matches"],
    }
    for fault, (selection, _, _) in FAULTS.items():
        plans[fault] = [f"faulty:{fault}", *NARROW, *(selection or DEFAULT_SELECTION)]

    def run(name):
        args = plans[name]
        at = args.index("--") if "--" in args else len(args)
        report = root / f"report-{name}"
        return gate(*args[:at], "--report", report, *args[at:], cwd=root, pythonpath=[root]), report

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(plans, pool.map(run, plans)))


def test_conforming_example_passes_and_writes_the_report(runs):
    completed, report = runs["conforming"]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    document = json.loads((report / "report.json").read_text())
    assert {"normspec_version", "spec_version", "profile", "adapters", "results"} <= set(document)
    assert document["profile"] == "ci"
    (adapter,) = document["adapters"]
    assert adapter["id"] == "welford-kernel"
    assert adapter["framework"].startswith("welford-kernel 1.0 (numpy ")
    assert adapter["devices"] == {"cpu": None}
    assert {(r["test"], r["op"]) for r in document["results"]} >= {
        ("test_forward_matches_reference", "layer_norm"), ("test_forward_matches_reference", "batch_norm"),
        ("test_exact_statistics", "layer_norm"), ("test_single_value_channel", "batch_norm")}
    for record in document["results"]:
        assert {"clauses", "op", "dtype", "device", "status", "message"} <= set(record)
        assert record["status"] == "pass" and record["dtype"] == "float32" and record["device"] == "cpu"
        assert record["clauses"]
    summary = (report / "summary.md").read_text()
    assert "| clause | batch_norm | layer_norm |" in summary
    assert "| NUM-1.1 | pass | pass |" in summary
    assert "| BN-5.1 | pass |  |" in summary
    suite = ElementTree.parse(report / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("errors") == "0" and int(suite.get("tests")) >= 4


def test_deviating_example_fails_citing_its_clause(runs):
    completed, report = runs["deviating"]
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr
    (record,) = records(report, test="test_exact_statistics", op="layer_norm", dtype="float32")
    assert record["status"] == "fail"
    assert record["failed_clause"] == "NUM-1.4" and "NUM-1.4" in record["clauses"]
    assert record["message"].startswith("NUM-1.4 violated: eps-outside layer_norm output")
    assert "reproduce:" in record["message"]
    assert "test_exact_statistics[eps-outside-layer_norm-float32-cpu]: NUM-1.4" in (report / "summary.md").read_text()
    # The terminal shows the message and Hypothesis's notes, not the traceback through the
    # suite (normspec.plugin.compact_reports); --tb=long brings the traceback back.
    shown = completed.stdout
    assert "NUM-1.4 violated: eps-outside layer_norm output" in shown and "Failing test case:" in shown
    assert "compare.py:" not in shown and "raise NonConformance" not in shown
    long_shown = runs["deviating-long-traceback"][0].stdout
    assert "NUM-1.4 violated: eps-outside layer_norm output" in long_shown and "compare.py:" in long_shown


def test_a_non_conformance_exits_1_when_pytest_stops_at_the_first(runs):
    """`-- -x` under pytest-xdist ends the run as "interrupted" (pytest's exit 2); the gate still
    exits 1 for the non-conformance, and still prints the summary and writes the report."""
    completed, report = runs["deviating-stop-at-first"]
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr
    assert "normspec conformance summary" in completed.stdout
    assert any(r["status"] == "fail" and r["failed_clause"] == "NUM-1.4" for r in records(report))


def test_failure_snippet_reproduces_the_failure(runs, tmp_path):
    _, report = runs["deviating"]
    snippets = sorted((report / "failures").glob("*.py"))
    assert snippets and all(s.with_suffix(".npz").is_file() for s in snippets)
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES))
    completed = subprocess.run([sys.executable, snippets[0]], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode != 0
    assert "normspec.compare.NonConformance: NUM-1" in completed.stderr, completed.stderr[-2000:]


def test_expectations_file_turns_the_finding_into_an_expected_failure(runs):
    completed, report = runs["deviating-expected"]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    (record,) = records(report, test="test_exact_statistics", op="layer_norm", dtype="float32")
    assert record["status"] == "expected-failure"
    assert "eps_outside_expectations.toml" in record["message"]


def test_the_example_expectations_cover_the_whole_default_run(tmp_path):
    """examples/README.md's third command: the deviating kernel with its expectations file
    passes the whole ci profile (exit 0): every failure is listed, every entry still fails."""
    completed = gate("eps_outside_kernel:EpsOutside", "--expectations", EXAMPLES / "eps_outside_expectations.toml",
                     cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr


def test_expectation_that_no_longer_fails_fails_the_gate(runs):
    completed, report = runs["stale"]
    assert completed.returncode == 1
    (record,) = records(report, test="test_exact_statistics", op="layer_norm")
    assert record["status"] == "fail" and "no longer fails" in record["message"]


def test_intermittent_expectation_may_pass(runs):
    completed, report = runs["intermittent"]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    (record,) = records(report, test="test_exact_statistics", op="layer_norm")
    assert record["status"] == "pass"


def test_the_entry_citing_the_failures_clause_applies(runs):
    completed, report = runs["two-entries"]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    (record,) = records(report, test="test_exact_statistics", op="layer_norm", dtype="float32")
    assert record["status"] == "expected-failure"


def _one_line_error(completed):
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    return output


# kind -> (file text, what the one-line error says besides the file name)
MALFORMED = {
    "bad-toml": ("[[finding]\nid = ", "not valid TOML"),
    "missing-keys": ('[[finding]]\nid = "x"\nclauses = ["NUM-1.4"]\n', "missing title"),
    "unknown-key": (STALE + 'colour = "red"\n', "unknown key(s) [\'colour\']"),
    "old-format": ('[[expected_failure]]\ntest = "test_exact_statistics"\nclause = "NUM-1.4"\n',
                   "python -m normspec.expectations_convert"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_expectations_file_is_a_usage_error(kind, tmp_path):
    text, says = MALFORMED[kind]
    (tmp_path / "bad.toml").write_text(text)
    output = _one_line_error(gate("numpy", "--ops", "layer_norm", "--expectations", "bad.toml", cwd=tmp_path))
    assert "bad.toml" in output and says in output


@pytest.mark.parametrize("args, says", [
    (["no-such-adapter"], "unknown adapter 'no-such-adapter'"),
    (["no_such_module:Adapter"], "cannot be imported"),
    (["needs_missing_dependency:Adapter"], "No module named 'not_installed_anywhere'"),
    (["welford_kernel:NoSuchClass"], "has no attribute 'NoSuchClass'"),
    (["numpy", "--ops", "layer_norm,batchnorm"], "--ops: unknown batchnorm"),
    (["numpy", "--spec-version", "9.9.9"], "--spec-version 9.9.9"),
    (["raises_on_import:Adapter"], "no CUDA device"),
])
def test_usage_errors_exit_2_with_one_line(args, says, tmp_path):
    (tmp_path / "needs_missing_dependency.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('no CUDA device')\n")
    assert says in _one_line_error(gate(*args, cwd=tmp_path, pythonpath=[tmp_path]))


@pytest.mark.parametrize("fault", FAULTS)
def test_faulty_adapter_fails_with_a_complete_report(runs, fault):
    completed, report = runs[fault]
    _, op, says = FAULTS[fault]
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr
    assert "Traceback" not in completed.stderr
    affected = records(report, op=op)
    assert affected and all(r["status"] == "fail" and says in r["message"] for r in affected), affected
    others = [r for r in records(report) if r["op"] != op]
    assert all(r["status"] == "pass" for r in others)
    if fault in ("Aborts", "Sleeps"):  # the run went on past the crash or the hang
        assert others


def test_workers_keep_jax_from_claiming_the_gpu(runs):
    """--workers N: each JAX process would otherwise preallocate 75% of a GPU's memory."""
    completed, report = runs["workers"]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    expected = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # a value the user set is kept
    adapters = json.loads((report / "report.json").read_text())["adapters"]
    assert adapters[0]["framework"] == f"XLA_PYTHON_CLIENT_PREALLOCATE={expected}", adapters


def _item(nodeid, **params):
    from types import SimpleNamespace
    values = {"adapter": SimpleNamespace(id="numpy"), "op": "layer_norm", "dtype": "float32", "device": "cpu", **params}
    return SimpleNamespace(originalname="test_forward_matches_reference", nodeid=nodeid,
                           callspec=SimpleNamespace(params=values))


def test_ci_examples_do_not_depend_on_the_node_id_or_the_device():
    """The ci profile's seed comes from the test and its parameters: `normspec check` (the
    bundled suite, other node IDs) draws the examples tox drew, and CUDA the ones CPU drew."""
    from normspec.plugin.hypothesis_control import example_seed
    from normspec.plugin.parametrize import item_params

    def seed(item):
        return example_seed(item.originalname, item_params(item))

    here = seed(_item("tests/conformance/test_forward.py::test_forward_matches_reference[numpy-...]"))
    installed = seed(_item("site-packages/normspec/tests/conformance/test_forward.py::x", device="cuda"))
    assert here == installed
    assert seed(_item("x", dtype="float64")) != here
    assert seed(_item("x", family="large_offset")) != here


def test_bench_prints_the_figures_and_the_slowest_tests(tmp_path):
    """`normspec bench` as a user runs it: one row per adapter with the examples it ran and
    the verdict, then (--slowest N) the N tests that took longest."""
    completed = subprocess.run([sys.executable, "-m", "normspec.cli", "bench", "numpy", "--ops", "rms_norm",
                                *NARROW, "--slowest", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    header, row, title, *slowest = completed.stdout.splitlines()
    assert header.split()[:3] == ["adapter", "wall", "s"] and "ratio" in header
    fields = row.split()
    assert fields[0] == "numpy" and int(fields[2]) > 0 and fields[-1] == "conforms"
    assert "slowest tests" in title and len(slowest) == 2
    assert all(line.split()[0].startswith("test_") and "examples" in line for line in slowest)


def test_each_op_and_dtype_runs_together_for_jit_adapters():
    """For adapters that compile per shape (the Flax ones), the plugin runs the items of one op,
    dtype and device together (the tests sharing the executables), keeping the collection
    order within a group and putting the items without an op first."""
    from types import SimpleNamespace

    from normspec.adapters import load_adapter
    from normspec.plugin.parametrize import group_by_op_and_dtype
    assert not load_adapter("numpy").compiles_per_shape
    if importlib.util.find_spec("flax") is not None:
        assert load_adapter("flax-linen").compiles_per_shape
    items = [_item(f"{test}[{op}-{dtype}]", op=op, dtype=dtype)
             for test in ("test_backward", "test_forward") for op in ("rms_norm", "layer_norm")
             for dtype in ("float32", "float16")]
    items.insert(3, SimpleNamespace(nodeid="test_spec", callspec=None))
    group_by_op_and_dtype(items)
    assert [item.nodeid for item in items] == ["test_spec"] + [
        f"{test}[{op}-{dtype}]" for op in ("layer_norm", "rms_norm") for dtype in ("float16", "float32")
        for test in ("test_backward", "test_forward")]


def test_examples_do_not_depend_on_the_modules_imported(tmp_path, monkeypatch):
    """Hypothesis draws some integers and floats from the literals of imported "local"
    modules; the plugin turns that off (without_local_constants), so a run draws the same
    examples whichever adapters it imports and whether normspec is a checkout or a wheel."""
    import importlib

    from hypothesis import given, settings, strategies as st
    from hypothesis.internal.conjecture import providers

    from normspec.plugin import hypothesis_control

    assert hasattr(providers, "_get_local_constants"), (
        "Hypothesis no longer has providers._get_local_constants: check how it draws constants now and "
        "update normspec.plugin.hypothesis_control.without_local_constants")
    drawn = []

    @settings(max_examples=300, derandomize=True, database=None)
    @given(st.integers(0, 2**32 - 1))
    def draw(value):
        drawn.append(value)

    def run(hook):
        monkeypatch.setattr(providers, "_get_local_constants", hook)
        providers.CONSTANTS_CACHE.cache.clear()
        drawn.clear()
        draw()
        return list(drawn)

    hypothesis_control.without_local_constants()
    suppressed, hypothesis_own = providers._get_local_constants, hypothesis_control.HYPOTHESIS_LOCAL_CONSTANTS
    before, own_before = run(suppressed), run(hypothesis_own)
    (tmp_path / "normspec_constants_probe.py").write_text(
        "PROBE = (" + ", ".join(str(7_000_003 + 17 * i) for i in range(500)) + ")\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("normspec_constants_probe")
    assert run(hypothesis_own) != own_before, "the probe module should change Hypothesis's own draws"
    assert run(suppressed) == before


SAMPLE_VARIANCE = '''
from welford_scaler import WelfordScaler, WelfordScalerAdapter

class SampleVariance(WelfordScaler):
    def variance(self):
        return self.m2 / (self.count - 1)

class SampleVarianceAdapter(WelfordScalerAdapter):
    id = "sample-variance"
    def standard_scaler(self, *, with_mean, with_std, device):
        return SampleVariance(with_mean=with_mean, with_std=with_std)
'''


def test_a_third_party_scaler_gates_through_the_adapter_form(tmp_path):
    """examples/welford_scaler.py, a standardization written outside normspec, passes its gate
    (exit 0, scaler tests only: it declares no layer); the same scaler dividing by n - 1 while it
    declares the population variance fails it, citing SCALE-7.1 (exit 1)."""
    (tmp_path / "sample_variance.py").write_text(SAMPLE_VARIANCE)
    conforming = gate("welford_scaler:WelfordScalerAdapter", *NARROW, "--report", tmp_path / "ok", cwd=tmp_path)
    assert conforming.returncode == 0, conforming.stdout[-3000:] + conforming.stderr[-3000:]
    ran = records(tmp_path / "ok", op="standard_scaler")
    assert ran and {r["status"] for r in ran} == {"pass"}
    assert not records(tmp_path / "ok", op="layer_norm")
    deviating = gate("sample_variance:SampleVarianceAdapter", *NARROW, "--report", tmp_path / "bad", "--", "-k",
                     "test_fitted_statistics", cwd=tmp_path, pythonpath=[tmp_path])
    assert deviating.returncode == 1, deviating.stdout[-3000:] + deviating.stderr[-3000:]
    assert {r["failed_clause"] for r in records(tmp_path / "bad", status="fail")} == {"SCALE-7.1"}


def test_mixed_precision_without_the_keyword_is_a_usage_error(monkeypatch):
    """An adapter that declares Capabilities.mixed_precision must take `param_dtype` in every method a
    mixed call reaches (NUM-2.3): loading one that does not fails at once, naming the methods and the
    fix, instead of every mixed item failing with a TypeError."""
    from normspec.adapters import Capabilities, FunctionalAdapter, load_adapter, methods_without_param_dtype
    from normspec.dtypes import MIXED_PRECISION
    from normspec.errors import UsageError

    class Broken(FunctionalAdapter):
        id = "broken-mixed"
        capabilities = Capabilities(ops=("layer_norm", "batch_norm"), mixed_precision=MIXED_PRECISION,
                                    backward_ops=("layer_norm",))

        def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
            return x

        def batch_norm(self, x, *, param_dtype=None, **arguments):
            return x, None, None

        def vjp(self, op, x, dy, **arguments):
            return {}

    class Fixed(Broken):
        def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
            return x

    class BrokenSync(Fixed):  # a data-parallel op: its replicated layer and VJP are reached too
        capabilities = Capabilities(ops=("layer_norm",), mixed_precision=MIXED_PRECISION,
                                    data_parallel=("sync_batch_norm",), data_parallel_backward=("sync_batch_norm",))

        def sync_batch_norm_layer(self, **arguments):
            return None

        def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device):
            return {}

    assert methods_without_param_dtype(Broken()) == ["layer_norm"]
    assert methods_without_param_dtype(Fixed()) == []
    assert methods_without_param_dtype(BrokenSync()) == ["sync_batch_norm_vjp"]
    monkeypatch.setattr(sys.modules[__name__], "BrokenMixedAdapter", Broken, raising=False)
    with pytest.raises(UsageError, match=r"layer_norm take no `param_dtype`.*NUM-2\.3"):
        load_adapter(f"{__name__}:BrokenMixedAdapter")


def test_an_adapter_of_a_mixed_precision_context_gets_the_mixed_items_alone(monkeypatch):
    """Capabilities(same_dtype=False), as torch-autocast declares: a test with a parameter dtype runs with the
    declared pairs only, a test without one does not run the adapter, `normspec adapters` says so, and
    declaring it with no pair is an error that says the adapter would run nothing."""
    from types import SimpleNamespace

    from normspec.adapters import Capabilities, FunctionalAdapter
    from normspec.cli import _adapter_line
    from normspec.dtypes import DTYPES, MIXED_PRECISION
    from normspec.plugin.parametrize import parametrize

    class MixedAlone(FunctionalAdapter):
        id, framework = "mixed-alone", "numpy"
        capabilities = Capabilities(ops=("layer_norm",), dtypes=("float16", "bfloat16"),
                                    mixed_precision=MIXED_PRECISION, same_dtype=False)

        def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
            return x

    def collected(fixtures):
        calls = []
        metafunc = SimpleNamespace(fixturenames=fixtures, function=lambda: None,
                                   parametrize=lambda names, params, ids: calls.append(ids))
        suite = SimpleNamespace(adapters=[MixedAlone()], ops=("layer_norm", "rms_norm"), dtypes=DTYPES,
                                devices=("cpu",), device_notes={})
        parametrize(metafunc, suite)
        return calls[0]

    assert collected(["adapter", "op", "dtype", "device", "param_dtype"]) == [
        "mixed-alone-layer_norm-float16-cpu-float32", "mixed-alone-layer_norm-bfloat16-cpu-float32"]
    assert collected(["adapter", "op", "dtype", "device"]) == []
    monkeypatch.setattr(sys.modules[__name__], "MixedAloneAdapter", MixedAlone, raising=False)
    assert ("ops: layer_norm (mixed precision only: float16 with float32 parameters, bfloat16 with float32 "
            "parameters)") in _adapter_line(f"{__name__}:MixedAloneAdapter")
    with pytest.raises(ValueError, match="would run nothing"):
        Capabilities(same_dtype=False)
