"""Running the conformance suite in-process on zoo adapters, and reading what it found.

Each run is one `pytest.main` session over the installed suite (normspec.tests.conformance)
with normspec's plugin and a collector plugin object (`_Collector`) that

- keeps the result record the normspec plugin attaches to every test report (the
  clause a failure cites, its message), and
- counts Hypothesis examples: it wraps the `inner_test` of each @given test (the
  function Hypothesis calls once per example, shrinking included) and notes the
  running count when a NonConformance is first raised. A test without Hypothesis
  counts one example per run.

Sessions run in worker processes started with "spawn", so that neither the caller's
pytest session nor its Hypothesis settings are touched.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.resources import files

import pytest
from hypothesis import settings

from normspec.compare import NonConformance

SUITE = files("normspec.tests") / "conformance"


class _Collector:
    """A pytest plugin object: result records and example counts of one session."""

    def __init__(self, no_database: bool = False):
        self.records, self.examples, self.tests = [], 0, 0
        self.first_failure = None  # (examples so far, examples in that test, tests so far, nodeid, clause)
        self.no_database = no_database

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config):
        if self.no_database:  # each seed on its own: no replay of examples saved by earlier runs
            settings.register_profile("normspec-zoo-nodb", parent=settings.default, database=None)
            settings.load_profile("normspec-zoo-nodb")

    def _failed(self, start: int, item, error: NonConformance) -> None:
        if self.first_failure is None:
            self.first_failure = (self.examples, self.examples - start, self.tests, item.nodeid, error.clause)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        self.tests += 1
        start = self.examples
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is None:
            self.examples += 1
            outcome = yield
            error = outcome.excinfo[1] if outcome.excinfo else None
            if isinstance(error, NonConformance):
                self._failed(start, item, error)
            return
        inner = handle.inner_test

        def counted(*args, **kwargs):
            self.examples += 1
            try:
                return inner(*args, **kwargs)
            except NonConformance as error:
                self._failed(start, item, error)
                raise

        handle.inner_test = counted
        try:
            yield
        finally:
            handle.inner_test = inner

    def pytest_runtest_logreport(self, report):
        record = next((value for name, value in report.user_properties if name == "normspec"), None)
        if record is not None:
            self.records.append(record)


def run_session(adapters, *, profile: str = "ci", maxfail: int | None = None, seed: int | None = None,
                select=None, options=(), workdir: str | None = None) -> dict:
    """One in-process pytest session of the suite on `adapters` (package.module:attr targets).
    Returns the records, the example counts and the session's terminal output."""
    workdir = workdir or tempfile.gettempdir()
    os.environ["NORMSPEC_FAILURE_DIR"] = os.path.join(workdir, "failures")
    collector = _Collector(no_database=seed is not None)
    args = list(select) if select else [str(SUITE)]
    args += ["-p", "normspec.pytest_plugin", "-c", os.devnull, "--rootdir", workdir, "-p", "no:cacheprovider",
             "--import-mode=importlib", "--devices", "cpu", "--normspec-profile", profile, "-q", "--tb=line",
             "-W", "ignore::RuntimeWarning", "--call-timeout", "60"]
    for target in adapters:
        args += ["--adapter", target]
    if maxfail:
        args += ["--maxfail", str(maxfail)]
    if seed is not None:
        args += ["--hypothesis-seed", str(seed)]
    args += list(options)
    output = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(output):
        code = pytest.main(args, plugins=[collector])
    return {"exit_code": int(code), "records": collector.records, "examples": collector.examples,
            "tests": collector.tests, "first_failure": collector.first_failure,
            "seconds": time.perf_counter() - started, "output": output.getvalue()}


# ---------------------------------------------------------------- the kill

@dataclass
class Outcome:
    """What the suite did to one mutant."""

    mutant: str
    violates: str
    caught_by: list
    status: str  # killed | wrong-clause | survived | spurious | error
    clause: str | None = None  # the clause the failure cites (normspec's record)
    test: str | None = None  # the failing test's node ID
    examples: int = 0  # examples run up to and including the first failing one
    examples_in_test: int = 0  # of which in the failing test
    tests: int = 0  # tests run, the failing one included
    seconds: float = 0.0
    message: str = ""
    confirmation: str = ""  # what the correct kernel did on the failing test
    clauses_seen: list = field(default_factory=list)  # every clause cited, with --maxfail > 1


def kill_one(name: str, maxfail: int = 1, confirm: bool = True, workdir: str | None = None) -> dict:
    """Run the ci profile on the mutant `name` until `maxfail` tests fail; the Outcome as a dict."""
    from normspec.zoo import by_name, target
    cls = by_name(name)
    started = time.perf_counter()
    session = run_session([target(cls)], maxfail=maxfail, workdir=workdir)
    failures = [r for r in session["records"] if r["status"] == "fail"]
    outcome = Outcome(cls.id, cls.violates, sorted(cls.caught_by), "survived", tests=session["tests"],
                      examples=session["examples"])
    if session["exit_code"] not in (0, 1):
        outcome.status, outcome.message = "error", f"pytest exit code {session['exit_code']}\n" + session["output"][-3000:]
    elif failures:
        first = failures[0]
        outcome.clause, outcome.test, outcome.message = first["failed_clause"], first["nodeid"], first["message"]
        outcome.clauses_seen = sorted({r["failed_clause"] or "(none)" for r in failures})
        if session["first_failure"] is not None:
            outcome.examples, outcome.examples_in_test, outcome.tests = session["first_failure"][:3]
        outcome.status = "killed" if outcome.clause in cls.caught_by else "wrong-clause"
        if confirm and outcome.status == "killed":
            outcome.confirmation = _confirm(cls, first, workdir)
            if outcome.confirmation != "passes":
                outcome.status = "spurious"
    outcome.seconds = time.perf_counter() - started
    return asdict(outcome)


def _confirm(cls, record: dict, workdir) -> str:
    """Run the test that killed the mutant on its correct base kernel, with the same
    (derandomized) examples: the kill is the mutation's only if the base passes."""
    from normspec.zoo import target
    path, _, name = record["nodeid"].rpartition("::")
    base = cls.base()
    params = name[name.index("[") + 1:-1]
    node = f"{SUITE / os.path.basename(path)}::{record['test']}[{base.id}{params[len(cls.id):]}]"
    session = run_session([target(cls.base)], select=[node], workdir=workdir)
    results = [r["status"] for r in session["records"]]
    if results == ["pass"]:
        return "passes"
    if not results:
        return f"not run ({node})"
    failed = [r for r in session["records"] if r["status"] == "fail"]
    return f"base {base.id} also fails: {failed[0]['failed_clause'] if failed else results}"


def _pool(jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def kill(names=None, *, jobs: int | None = None, maxfail: int = 1, confirm: bool = True) -> list:
    """The Outcome (dict) of every mutant, in zoo order, run over `jobs` worker processes."""
    from normspec.zoo import MUTANTS
    names = list(names) if names else [cls.id for cls in MUTANTS]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    with tempfile.TemporaryDirectory(prefix="normspec-zoo-") as workdir, _pool(jobs) as pool:
        futures = [pool.submit(kill_one, name, maxfail, confirm, workdir) for name in names]
        return [future.result() for future in futures]


# ---------------------------------------------------------------- false alarms

def sweep_one(targets: list, seed: int, profile: str, options=(), workdir: str | None = None) -> dict:
    """Every test of the suite on the correct implementations under one Hypothesis seed."""
    session = run_session(targets, profile=profile, seed=seed, options=options, workdir=workdir)
    failures = [dict(seed=seed, adapter=r.get("adapter"), test=r.get("test"), op=r.get("op"), dtype=r.get("dtype"),
                     clause=r.get("failed_clause"), nodeid=r.get("nodeid"), message=r.get("message", ""))
                for r in session["records"] if r["status"] == "fail"]
    counts = {}
    for r in session["records"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"seed": seed, "exit_code": session["exit_code"], "counts": counts, "failures": failures,
            "examples": session["examples"], "seconds": session["seconds"],
            "output": session["output"][-3000:] if session["exit_code"] not in (0, 1) else ""}


def false_alarms(targets: list, seeds, *, profile: str, jobs: int | None = None, options=()) -> list:
    """sweep_one for every seed, over `jobs` worker processes, in seed order."""
    seeds = list(seeds)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(seeds)))
    with tempfile.TemporaryDirectory(prefix="normspec-zoo-") as workdir, _pool(jobs) as pool:
        futures = [pool.submit(sweep_one, targets, seed, profile, tuple(options), workdir) for seed in seeds]
        return [future.result() for future in futures]
