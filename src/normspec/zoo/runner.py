"""Running the conformance suite in-process on zoo adapters, and reading what it found.

Each run is one `pytest.main` session over the installed suite (normspec.tests.conformance)
with normspec's plugin and a collector plugin object (`_Collector`) that

- keeps the result record the normspec plugin attaches to every test report (the
  clause a failure cites, its message), and
- counts Hypothesis examples: it wraps the `inner_test` of each @given test (the
  function Hypothesis calls once per example) and notes the running count when a
  NonConformance is first raised, so "examples needed" ends at the first failing
  example, before any shrinking. A test without Hypothesis counts one example.

Sessions run in worker processes started with "spawn", so that neither the caller's
pytest session nor its Hypothesis settings are touched.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib.resources import files

import pytest
from hypothesis import Phase, settings

from normspec.compare import NonConformance

SUITE = files("normspec.tests") / "conformance"


class _Collector:
    """A pytest plugin object: result records and example counts of one session."""

    def __init__(self, overrides: dict | None = None):
        self.records, self.examples, self.tests = [], 0, 0
        self.first_failure = None  # (examples so far, examples in that test, tests so far, nodeid, clause)
        self.overrides = overrides or {}

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config):
        """After normspec's plugin has loaded its profile: the same profile with `overrides`."""
        if self.overrides:
            settings.register_profile("normspec-zoo", parent=settings.default, **self.overrides)
            settings.load_profile("normspec-zoo")

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
                shrink: bool = True, select=None, options=(), workdir: str | None = None) -> dict:
    """One in-process pytest session of the suite on `adapters` (package.module:attr targets).

    seed: --hypothesis-seed, and no example database, so that each seed stands on its own.
    shrink=False leaves out Hypothesis's shrink and explain phases: the examples generated
    are the same (the generate phase does not depend on them), the failure is reported as
    first found. Returns the records, the example counts and the session's terminal output."""
    workdir = workdir or tempfile.gettempdir()
    os.environ["NORMSPEC_FAILURE_DIR"] = os.path.join(workdir, "failures")
    overrides = {} if seed is None else {"database": None}
    if not shrink:
        overrides["phases"] = (Phase.explicit, Phase.reuse, Phase.generate)
    collector = _Collector(overrides)
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
    status: str  # killed | wrong-clause | survived | spurious | error | gap (survived, a documented suite gap)
    clause: str | None = None  # the clause the failure cites (normspec's record)
    test: str | None = None  # the failing test's node ID
    examples: int = 0  # examples run up to and including the first failing one
    examples_in_test: int = 0  # of which in the failing test
    tests: int = 0  # tests run, the failing one included
    seconds: float = 0.0  # wall time of the mutant's run (its confirmation is shared with other mutants: not counted)
    cpu_seconds: float = 0.0  # CPU time of the worker process for it
    message: str = ""
    confirmation: str = ""  # what the correct kernel did on the failing test
    clauses_seen: list = field(default_factory=list)  # every clause cited, with --maxfail > 1
    gap: str = ""  # the mutant's documented suite gap, if any


def kill_one(name: str, maxfail: int = 1, shrink: bool = False, workdir: str | None = None) -> dict:
    """Run the ci profile on the mutant `name` until `maxfail` tests fail; the Outcome as a dict,
    unconfirmed (`kill` confirms each kill on the base kernel)."""
    from normspec.zoo import by_name, target
    cls = by_name(name)
    started, cpu_started = time.perf_counter(), time.process_time()
    session = run_session([target(cls)], maxfail=maxfail, shrink=shrink, workdir=workdir)
    failures = [r for r in session["records"] if r["status"] == "fail"]
    outcome = Outcome(cls.id, cls.violates, sorted(cls.caught_by), "gap" if cls.gap else "survived",
                      tests=session["tests"], examples=session["examples"], gap=cls.gap)
    if session["exit_code"] not in (0, 1):
        outcome.status = "error"
        outcome.message = f"pytest exit code {session['exit_code']}\n" + session["output"][-3000:]
    elif failures:
        first = failures[0]
        outcome.clause, outcome.test, outcome.message = first["failed_clause"], first["nodeid"], first["message"]
        outcome.clauses_seen = sorted({r["failed_clause"] or "(none)" for r in failures})
        if session["first_failure"] is not None:
            outcome.examples, outcome.examples_in_test, outcome.tests = session["first_failure"][:3]
        outcome.status = "killed" if outcome.clause in cls.caught_by else "wrong-clause"
    outcome.seconds = time.perf_counter() - started
    outcome.cpu_seconds = time.process_time() - cpu_started
    return asdict(outcome)


def confirmation_node(cls, nodeid: str) -> str:
    """The node ID of the test `nodeid` (which killed the mutant `cls`) on the mutant's base."""
    path, _, name = nodeid.rpartition("::")
    test, _, params = name.partition("[")
    return f"{SUITE / os.path.basename(path)}::{test}[{cls.base.id}{params[len(cls.id):-1]}]"


def _confirm_node(node: str, base, workdir) -> str:
    """Run the test `node` that killed a mutant on its correct base kernel `base`, with the same
    (derandomized) examples: the kill is the mutation's only if the base passes. "passes",
    else what the base did."""
    from normspec.zoo import target
    session = run_session([target(base)], select=[node], workdir=workdir)
    results = [r["status"] for r in session["records"]]
    if results == ["pass"]:
        return "passes"
    if not results:
        return f"not run ({node})"
    failed = [r for r in session["records"] if r["status"] == "fail"]
    return f"base {base.id} also fails: {failed[0]['failed_clause'] if failed else results}"


def _ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C reaches the whole process group; the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _pool(jobs: int):
    """A pool of `jobs` spawned workers that ignore SIGINT: on Ctrl-C (or any error) in the
    parent they are stopped at once, rather than waited for, and the exception goes on."""
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_interrupts)
    try:
        yield pool
    except BaseException:
        for process in list((pool._processes or {}).values()):  # no public way to stop running workers
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def in_worker(function, *args, **kwargs):
    """function(*args, **kwargs) in a fresh spawned worker process, as the kill and the sweep
    run their sessions: nothing of the caller's pytest or Hypothesis state reaches it."""
    with _pool(1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def kill(names=None, *, jobs: int | None = None, maxfail: int = 1, confirm: bool = True, shrink: bool = False) -> list:
    """The Outcome (dict) of every mutant, in zoo order, run over `jobs` worker processes.
    Without shrinking by default: a kill needs the first failure, not the smallest one.
    A kill is confirmed (`_confirm_node`) once per test and base kernel: many mutants of one
    base die in the same test (80 kills, 30 distinct confirmations), and a derandomized test
    on the same kernel gives the same result."""
    from normspec.zoo import MUTANTS, by_name
    names = [by_name(name).id for name in names] if names else [cls.id for cls in MUTANTS]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    # Longest first, so the workers finish together: the survivors run the whole suite of
    # their op, the ERR-1 mutants everything before test_errors.
    order = sorted(names, key=lambda n: (not by_name(n).gap, not by_name(n).violates.startswith("ERR")))
    with tempfile.TemporaryDirectory(prefix="normspec-zoo-") as workdir, _pool(jobs) as pool:
        kills = {pool.submit(kill_one, name, maxfail, shrink, workdir): name for name in order}
        outcomes, confirmations, waiting = {}, {}, {}  # name -> Outcome; node -> future; future -> names
        for future in as_completed(kills):
            name, outcome = kills[future], future.result()
            outcomes[name] = outcome
            if confirm and outcome["status"] == "killed":
                cls = by_name(name)
                node = confirmation_node(cls, outcome["test"])
                if node not in confirmations:
                    confirmations[node] = pool.submit(_confirm_node, node, cls.base, workdir)
                    waiting[confirmations[node]] = []
                waiting[confirmations[node]].append(name)
        for future, confirmed in waiting.items():
            result = future.result()
            for name in confirmed:
                outcomes[name]["confirmation"] = result
                if result != "passes":
                    outcomes[name]["status"] = "spurious"
        return [outcomes[name] for name in names]


# ---------------------------------------------------------------- false alarms

def sweep_one(targets: list, seed: int, profile: str, options=(), workdir: str | None = None,
              part: str | None = None) -> dict:
    """The suite's tests (of the test file `part` only, if given) on the correct
    implementations under one Hypothesis seed.

    A test that an adapter's expectations file lists as failing, and which passed, counts as
    "expectation-not-reproduced", not as a failure: the seed's examples missed the input that
    shows the recorded disagreement (the ci profile, derandomized, holds each entry to it)."""
    select = [str(SUITE / part)] if part else None
    session = run_session(targets, profile=profile, seed=seed, options=options, workdir=workdir, select=select)
    counts, failures = {}, []
    for r in session["records"]:
        status = "expectation-not-reproduced" if r["status"] == "fail" and r.get("stale_expectation") else r["status"]
        counts[status] = counts.get(status, 0) + 1
        if status == "fail":
            failures.append(dict(seed=seed, adapter=r.get("adapter"), test=r.get("test"), op=r.get("op"),
                                 dtype=r.get("dtype"), clause=r.get("failed_clause"), nodeid=r.get("nodeid"),
                                 message=r.get("message", "")))
    return {"seed": seed, "exit_code": session["exit_code"], "counts": counts, "failures": failures,
            "examples": session["examples"], "seconds": session["seconds"],
            "output": session["output"][-3000:] if session["exit_code"] not in (0, 1) else ""}


def suite_parts() -> list:
    """The conformance suite's test files: the unit of work of a sweep. Hypothesis seeds
    each test from the global seed alone and the shape pools are fixed, so a seed's
    examples are the same whether its tests run in one session or one per file."""
    return sorted(entry.name for entry in SUITE.iterdir()
                  if entry.name.startswith("test_") and entry.name.endswith(".py"))


def _merge(seed: int, by_part: dict) -> dict:
    """One seed's result from the results of its parts (test file -> sweep_one result)."""
    parts = list(by_part.values())
    counts = {}
    for part in parts:
        for status, count in part["counts"].items():
            counts[status] = counts.get(status, 0) + count
    # A file whose tests the options deselect exits 5 (no tests); only all of them is an error.
    ran = [p for p in parts if p["exit_code"] != 5] or parts[:1]
    failed = [p for p in ran if p["exit_code"] not in (0, 1)]
    return {"seed": seed, "exit_code": failed[0]["exit_code"] if failed else max(p["exit_code"] for p in ran),
            "counts": counts, "failures": [f for p in parts for f in p["failures"]],
            "examples": sum(p["examples"] for p in parts), "seconds": sum(p["seconds"] for p in parts),
            "output": "\n".join(p["output"] for p in failed),
            "parts": {name: {"seconds": round(p["seconds"], 1), "examples": p["examples"]}
                      for name, p in sorted(by_part.items())}}


def false_alarms(targets: list, seeds, *, profile: str, jobs: int | None = None, options=(),
                 workdir: str = "normspec-zoo-false-alarms", on_result=None) -> list:
    """sweep_one for every seed, in seed order; each seed's test files run as separate
    sessions over `jobs` worker processes, so that many cores finish a few seeds sooner.
    "seconds" of a seed is the sum of its sessions' wall times; "parts" gives each file's.
    A failing case too large to print is saved under `workdir`/failures (kept: the repro
    snippets name it). on_result(result) is called as each seed finishes. On
    KeyboardInterrupt the workers are stopped at once and the interrupt is raised again:
    the seeds finished by then have been passed to on_result."""
    seeds, parts = list(seeds), suite_parts()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(seeds) * len(parts)))
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    done = {seed: {} for seed in seeds}  # seed -> test file -> sweep_one result
    with _pool(jobs) as pool:
        futures = {pool.submit(sweep_one, targets, seed, profile, tuple(options), workdir, part): (seed, part)
                   for seed in seeds for part in parts}
        for future in as_completed(futures):
            seed, part = futures[future]
            done[seed][part] = future.result()
            if len(done[seed]) == len(parts) and on_result is not None:
                on_result(_merge(seed, done[seed]))
    return [_merge(seed, done[seed]) for seed in seeds]
