"""The mutant zoo (normspec.zoo): the conformance suite, on its ci profile, kills every
deliberately broken implementation, and each failure cites a clause declared for it.

One kill run (`python -m normspec.zoo kill`) serves the module; it runs in worker
processes, so this session's pytest and Hypothesis settings are untouched.
"""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from normspec import clauses
from normspec.cases import Case
from normspec.driver import run_case
from normspec.zoo import MUTANTS, Mutant, runner
from normspec.zoo.__main__ import print_kill_matrix
from normspec.zoo.correct import CORRECT


def test_the_zoo_is_declared():
    """At least 30 mutants, each with its own id, a docstring naming the bug, the clause it
    violates and the clauses a failure may cite, all clauses of the spec."""
    known = set(clauses.index())
    ids = [cls.id for cls in MUTANTS]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    for cls in MUTANTS:
        assert issubclass(cls, Mutant) and cls.id.startswith("mutant-"), cls
        assert (cls.__doc__ or "").strip(), f"{cls.id} has no docstring naming its bug"
        assert cls.violates in known, f"{cls.id} violates unknown clause {cls.violates}"
        assert cls.caught_by and set(cls.caught_by) <= known, f"{cls.id}: {sorted(set(cls.caught_by) - known)}"
        assert set(cls.capabilities.ops) <= set(cls.base.capabilities.ops)
    assert {cls.id for cls in CORRECT} == {"zoo-twopass", "zoo-kahan", "zoo-welford", "zoo-fused", "zoo-lerp-update",
                                           "zoo-streaming-scaler", "zoo-sync-merge"}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, worker_id):
    """The one kill run of the module. Under pytest-xdist the first worker that needs it runs
    it (over all cores) and the others wait for its result, so CI's two cores run one kill,
    not two."""
    if worker_id == "master":  # no xdist
        return runner.kill()
    shared = tmp_path_factory.getbasetemp().parent / "zoo-kill.json"  # this run's, all workers'
    with FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_text(json.dumps(runner.kill()))
        return json.loads(shared.read_text())


def _matrix(outcomes) -> str:
    text = io.StringIO()
    print_kill_matrix(outcomes, sum(o["seconds"] for o in outcomes), out=text)
    return text.getvalue()


def test_every_mutant_is_killed_citing_a_declared_clause(outcomes):
    """Killed: a test fails, the failure cites a clause in the mutant's `caught_by`, and
    the correct kernel the mutant breaks passes that same test (same examples)."""
    assert [o["mutant"] for o in outcomes] == [cls.id for cls in MUTANTS]
    missed = [o["mutant"] for o in outcomes if not o["gap"] and o["status"] != "killed"]
    if missed:
        pytest.fail(f"not killed as declared: {', '.join(missed)}\n{_matrix(outcomes)}")


def test_documented_gaps_still_survive(outcomes):
    """A mutant marked with a suite gap survives; once the suite kills it, drop the mark
    (like an expectation that no longer fails)."""
    stale = [o["mutant"] for o in outcomes if o["gap"] and o["status"] != "gap"]
    if stale:
        pytest.fail(f"killed or broken although marked as a suite gap (remove `gap`): {', '.join(stale)}\n"
                    f"{_matrix(outcomes)}")


def test_kills_are_counted(outcomes):
    """Each kill names its test and the examples it took (at least the failing one)."""
    for o in outcomes:
        if o["status"] == "killed":
            assert o["test"] and o["examples"] >= o["examples_in_test"] >= 1 and o["tests"] >= 1, o


# Cases on which a false-alarm sweep (python -m normspec.zoo false-alarms) once failed a
# correct implementation: file name -> the implementation. Each was a defect of the error
# model, fixed in the spec; the case stays to keep it fixed.
FALSE_ALARMS = {
    # A two-pass float32 BatchNorm evaluated with a subnormal running mean (~1e-40): the
    # products (x - mean) * r and gamma * x_hat underflow, with absolute errors NUM-1.1 did
    # not admit before spec 0.2.0 (docs/zoo.md).
    "zoo-twopass-batch_norm-float32-cpu-4cf146d00001.npz": "zoo-twopass",
    # Welford's updating algorithm, which the note of NUM-1.1 admits, against spec 0.2.0
    # (normspec check normspec.zoo.correct:WelfordKernel, ci profile, 2026-11-26):
    # exact-statistics GroupNorm, whose running mean rounds at every step, missed NUM-1.4's
    # 4u budget (1.41x); the running variance of a two-element slice with sigma^2 << eps
    # missed NUM-1.5 (1.15x), whose first-order mean term divided by sqrt(sigma^2 + eps);
    # an infinite gamma at an element equal to the mean gave Inf where NUM-4.3 wanted NaN.
    "zoo-welford-group_norm-float32-cpu-734d993f7640.npz": "zoo-welford",
    "zoo-welford-batch_norm-float32-cpu-runningvar.npz": "zoo-welford",
    "zoo-welford-instance_norm-float32-cpu-607b5c9af245.npz": "zoo-welford",
}


@pytest.mark.parametrize("name", FALSE_ALARMS)
def test_correct_implementations_pass_the_former_false_alarms(name):
    implementation = next(cls for cls in CORRECT if cls.id == FALSE_ALARMS[name])()
    run_case(implementation, Case.load(str(Path(__file__).parent / "false_alarms" / name)), "cpu")


def test_a_sweep_split_into_test_files_runs_the_same_examples(tmp_path):
    """The false-alarm sweep runs each seed's test files as separate sessions (so that many
    cores finish a seed sooner); that is sound only if the examples do not depend on the
    split: one session and the per-file sessions must run the same examples and tests."""
    target, options = "normspec.zoo.correct:TwoPassKernel", ("--ops", "rms_norm", "--examples", "8")
    # The whole session runs in a spawned worker, as the split ones do: run in this process, it would
    # inherit the Hypothesis state of the tests this session ran before it (it drew 1,387 examples
    # instead of 651 after test_forward's rms_norm tests).
    whole = runner.in_worker(runner.run_session, [target], profile="dev", seed=3, options=options,
                             workdir=str(tmp_path))
    split, = runner.false_alarms([target], [3], profile="dev", jobs=1, options=options, workdir=str(tmp_path))
    assert whole["exit_code"] == 0 and split["exit_code"] == 0, (whole["output"], split["output"])
    assert split["examples"] == whole["examples"] > 0
    assert split["counts"] == {"pass": len(whole["records"])}
    assert set(split["parts"]) == set(runner.suite_parts())


_ENTRY = '''
[[finding]]
id = "{adapter}-listed"
title = "listed for the test"
mechanism = "listed for the test"
clauses = ["{clause}"]
versions = {{ cpu = "none" }}
belongs_to = "framework"
upstream = "not reported"
snippet = "print('none')"
observed = "none"
expected = "none"
matches = [{{ adapter = "{adapter}", test = "test_forward_matches_reference", op = "rms_norm", dtype = "float32", clause = "{clause}" }}]
'''


def test_a_sweep_counts_failures_an_expectations_file_lists_apart(tmp_path):
    """The sweep takes the built-in adapters with their expectations files: a listed failure
    is expected, and a listed test that passes under a seed (its examples missed the input)
    is counted apart; neither is a false alarm."""
    from normspec.zoo import by_name, target
    mutant = by_name("mutant-rms-sum-not-mean")
    listed = tmp_path / "listed.toml"
    listed.write_text(_ENTRY.format(adapter=mutant.id, clause="NUM-1.1") + _ENTRY.format(adapter="zoo-twopass",
                                                                                        clause="NUM-1.1"))
    options = ("--ops", "rms_norm", "--dtypes", "float32", "--examples", "5", "--expectations", str(listed),
               "-k", "test_forward_matches_reference")
    result = runner.in_worker(runner.sweep_one, [target(mutant), "normspec.zoo.correct:TwoPassKernel"], 3, "dev",
                              options, str(tmp_path), "test_forward.py")
    assert result["counts"] == {"expected-failure": 1, "expectation-not-reproduced": 1}, result
    assert result["failures"] == []


def test_the_sweep_summary_prints_each_failure_whole(capsys):
    """A VJP failure's reproduction runs past 14 lines and ends with the call that runs it:
    the summary must not cut it (it once printed 14 lines, without that call)."""
    import argparse
    from normspec.zoo.__main__ import _sweep_summary
    message = "\n".join(["GRAD-6.3 violated: x"] + [f"line {i}" for i in range(20)]
                        + ["run_vjp_case(adapter, case, 'cpu')"])
    failure = dict(seed=3, adapter="a", test="t", op="batch_norm", dtype="float32", clause="GRAD-6.3", message=message)
    result = dict(seed=3, exit_code=1, counts={"fail": 1}, failures=[failure], examples=1, seconds=1.0, output="")
    assert _sweep_summary([result], ["a"], argparse.Namespace(json=None), 1.0) == 1
    assert "    run_vjp_case(adapter, case, 'cpu')" in capsys.readouterr().out


def test_an_input_modified_by_the_call_is_reported_and_restored():
    """GEN-6: a kernel that writes its output into the caller's x fails citing GEN-6, and
    x is restored, so that the message and the reproduction show the input as given."""
    from normspec.compare import NonConformance
    from normspec.zoo import by_name
    x = np.array([[0.5, -1.25], [3.0, 2.0], [-0.75, 1.5]], np.float32)
    given = x.copy()
    case = Case(op="batch_norm", dtype="float32", inputs=[x], training=[True], eps=1e-5,
                params={"weight": None, "bias": None, "running_mean": None, "running_var": None})
    with pytest.raises(NonConformance) as failure:
        run_case(by_name("mutant-output-in-input-buffer")(), case, "cpu")
    assert failure.value.clause == "GEN-6"
    assert "x: 6 of 6 elements changed; element [0, 0] was 0.5" in str(failure.value)
    assert np.array_equal(x, given) and "0.5, -1.25" in failure.value.reproduce
    run_case(by_name("mutant-output-in-input-buffer").base(), case, "cpu")  # the correct kernel passes


def test_a_law_failure_reproduces_the_law(tmp_path, monkeypatch):
    """A law compares two outputs of the implementation: its reproduction must compute both
    and print their difference, not check one case against the reference (which a law
    violation may pass)."""
    import contextlib, dataclasses, io
    from normspec.driver import observe
    from normspec.compare import Context, NonConformance, assert_within
    from normspec.adapters import load_adapter
    from normspec.zoo import by_name, target
    adapter = load_adapter(target(by_name("mutant-instance-norm-over-batch")))
    x = np.array([[[0.5, -1.25, 2.0], [3.0, 2.0, -1.0]], [[-0.75, 1.5, 0.25], [4.0, -2.0, 1.0]]])
    case = Case(op="instance_norm", dtype="float64", inputs=[x], training=[True], eps=1e-5,
                params={"weight": None, "bias": None, "running_mean": None, "running_var": None})
    alone = dataclasses.replace(case, inputs=[x[1:2]])
    difference = np.abs(observe(adapter, alone, "cpu") - observe(adapter, case, "cpu")[1:2]).max()
    context = Context(adapter.id, "instance_norm", "float64", "cpu", (1, 2, 3), alone, law=(case, "[1:2]"))
    with pytest.raises(NonConformance) as failure:
        assert_within(observe(adapter, alone, "cpu"), observe(adapter, case, "cpu")[1:2], np.full((1, 2, 3), 1e-12),
                      clause="IN-2", context=context, what="output of sample 1 alone")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(failure.value.reproduce, {})
    assert printed.getvalue() == f"largest difference: {difference}\n"
    assert difference > 0.1
    # Too large to print: both cases are saved where the snippet loads them from.
    from normspec import failures
    monkeypatch.setenv("NORMSPEC_FAILURE_DIR", str(tmp_path))
    big = dataclasses.replace(case, inputs=[np.tile(x, (1, 1, 20))])
    big_alone = dataclasses.replace(case, inputs=[big.inputs[0][1:2]])
    context = Context(adapter.id, "instance_norm", "float64", "cpu", (1, 2, 60), big_alone, law=(big, "[1:2]"))
    snippet = failures.save(context, always=False).with_suffix(".py").read_text()
    assert snippet.count("Case.load(") == 2 and len(list(tmp_path.glob("*.npz"))) == 2
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, {})
    assert float(printed.getvalue().split(":")[1]) > 0.1
