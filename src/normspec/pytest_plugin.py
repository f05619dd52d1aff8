"""The pytest plugin that runs normspec's conformance suite against adapters.

Loaded by the repository's conftest.py and by `normspec check`; in another project,
`pytest -p normspec.pytest_plugin --pyargs normspec.tests.conformance --adapter ID`.
Tests ask for the fixtures `adapter`, `op`, `dtype`, `device` and are parametrized
over what the selected adapters cover; they cite clauses with
@pytest.mark.clauses(...), narrow ops with @pytest.mark.ops(...) and need
capabilities with @pytest.mark.requires(...).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings

import gc
import hashlib
import os
import time

from normspec import clauses, expectations, failures, report, shape_pool
from normspec.adapters import DTYPES, OPS, load_adapter
from normspec.registry import clauses_for
from normspec.strategies import DRAWN
from normspec import compare
from normspec.compare import NonConformance
from normspec.errors import UsageError

PROFILES = {
    # Derandomized: the same examples every run, so a CI gate is reproducible.
    "ci": dict(max_examples=100, derandomize=True, database=None),
    "dev": dict(max_examples=20),
    "thorough": dict(max_examples=1000),
}
for _name, _options in PROFILES.items():
    # No "explain" phase and no @reproduce_failure blob: normspec's own message says where
    # the failure is and how to reproduce it, against the implementation, not the suite.
    settings.register_profile(f"normspec-{_name}", deadline=None, print_blob=False,
                              phases=[p for p in Phase if p is not Phase.explain],
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **_options)


def pytest_addoption(parser):
    group = parser.getgroup("normspec", "normspec conformance suite")
    group.addoption("--adapter", action="append", default=None,
                    help="adapter to check: a built-in ID or package.module:attr (repeatable; default numpy)")
    group.addoption("--ops", default=None, help=f"comma-separated ops to check (default all: {','.join(OPS)})")
    group.addoption("--dtypes", default=None, help=f"comma-separated dtypes (default all: {','.join(DTYPES)})")
    group.addoption("--devices", default="cpu,cuda", help="comma-separated devices (default cpu,cuda)")
    group.addoption("--normspec-profile", default="ci", choices=sorted(PROFILES),
                    help="Hypothesis profile: ci (derandomized, default), dev, thorough")
    group.addoption("--examples", type=int, default=None, help="Hypothesis examples per test (overrides the profile)")
    group.addoption("--expectations", action="append", default=None,
                    help="expectations file (TOML) to apply in addition to the built-in ones (repeatable)")
    group.addoption("--normspec-report", default=None, metavar="DIR", help="write report.json and summary.md to DIR")
    group.addoption("--spec-version", default=None, help="fail unless the bundled spec has this version")
    group.addoption("--call-timeout", type=float, default=60.0, metavar="SECONDS",
                    help="a call into the implementation that takes longer fails the test (default 60)")


def _choices(value: str | None, allowed, what: str) -> tuple:
    if value is None:
        return tuple(allowed)
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise pytest.UsageError(f"--{what}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


class SuiteState:
    """What the plugin holds for one run: selected adapters, filters, expectations and results."""

    def __init__(self, config):
        option = config.option
        try:
            self.adapters = [load_adapter(target) for target in (option.adapter or ["numpy"])]
            self.expectations = [e for a in self.adapters for e in expectations.builtin(a.id)]
            for path in option.expectations or []:
                self.expectations += expectations.load_file(path)
        except UsageError as error:
            raise pytest.UsageError(str(error)) from None
        self.ops = _choices(option.ops, OPS, "ops")
        self.dtypes = _choices(option.dtypes, DTYPES, "dtypes")
        self.devices = _choices(option.devices, ("cpu", "cuda"), "devices")
        self.profile = option.normspec_profile
        self.results = []
        self.device_notes = {}


class CompactNonConformanceReports:
    """A failure that is a NonConformance is shown with its message, which holds the
    evidence and the reproduction, and Hypothesis's notes; not the Python traceback
    through the suite's own frames. Formatting that traceback (--tb=auto or short) parses
    the source of each frame's module, ~35 ms a time, and it was done three times a failing
    test: twice by Hypothesis (its Flaky check and observability record, through
    `item.repr_failure`) and once for the report; most of those failures are expected
    ones, whose report is then discarded. --tb=long, native or line keeps pytest's format.
    (A class, registered in pytest_configure: this module's own pytest_runtest_makereport is
    the hook wrapper that applies the expectations.)"""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        own = getattr(item, "repr_failure", None)
        compact = own is not None and item.config.getoption("tbstyle", "auto") in ("auto", "short")
        if compact:
            item.repr_failure = lambda excinfo, **options: _compact_repr(excinfo) or own(excinfo, **options)
        try:
            yield
        finally:
            if compact:
                del item.repr_failure


def _compact_repr(excinfo):
    """The report of a NonConformance failure: its message and Hypothesis's notes (None for
    any other error, which keeps pytest's report)."""
    error = excinfo.value
    if not isinstance(error, NonConformance):
        return None
    longrepr = excinfo.getrepr(style="value", funcargs=False)
    if getattr(error, "__notes__", None):
        longrepr.addsection("Hypothesis", "\n".join(error.__notes__))
    return longrepr


def pytest_configure(config):
    for line in ("clauses(*ids): spec clauses the test checks", "ops(*names): ops the test applies to",
                 "dtypes(*names): dtypes the test applies to",
                 "devices(*names): devices the test applies to",
                 "per_op(name, function): one more parameter `name`, with values function(op)",
                 "requires(*capabilities): Capabilities flags the adapter needs"):
        config.addinivalue_line("markers", line)
    pinned = config.option.spec_version
    if pinned and pinned != clauses.spec_version():
        raise pytest.UsageError(f"--spec-version {pinned}: the installed normspec carries spec "
                                f"{clauses.spec_version()}; install the normspec release of that spec version")
    state = SuiteState(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(CompactNonConformanceReports(), "normspec-compact-reports")
    if config.option.normspec_report:
        os.environ["NORMSPEC_FAILURE_DIR"] = os.path.join(os.path.abspath(config.option.normspec_report), "failures")
    compare.CALL_TIMEOUT_S = config.option.call_timeout
    settings.load_profile(f"normspec-{state.profile}")
    shape_pool.set_size(shape_pool.SIZES[state.profile])
    without_local_constants()
    if config.option.examples:
        settings.register_profile("normspec-override", parent=settings.get_profile(f"normspec-{state.profile}"),
                                  max_examples=config.option.examples)
        settings.load_profile("normspec-override")


_STATE = pytest.StashKey[SuiteState]()


def _marker_args(function, name: str) -> tuple:
    return tuple(arg for mark in getattr(function, "pytestmark", []) if mark.name == name for arg in mark.args)


def pytest_generate_tests(metafunc):
    names = [n for n in ("adapter", "op", "dtype", "device") if n in metafunc.fixturenames]
    if "adapter" not in names:
        return
    state = metafunc.config.stash[_STATE]
    test_ops = _marker_args(metafunc.function, "ops") or OPS
    test_dtypes = _marker_args(metafunc.function, "dtypes") or DTYPES
    test_devices = _marker_args(metafunc.function, "devices") or ("cpu", "cuda")
    per_op = _marker_args(metafunc.function, "per_op")  # (name, function) or ()
    if per_op:
        names.append(per_op[0])
    needs = _marker_args(metafunc.function, "requires")
    params, ids = [], []
    for adapter in state.adapters:
        status = adapter.device_status()
        caps = adapter.capabilities
        if any(not getattr(caps, need) for need in needs):
            continue
        covered = caps.backward_ops if "backward_ops" in needs else caps.ops  # backward tests: ops with a vjp
        for op in (o for o in state.ops if o in test_ops and o in covered) if "op" in names else [None]:
            dtypes = ([d for d in state.dtypes if d in caps.dtypes_for(op) and d in test_dtypes]
                      if "dtype" in names else [None])
            for dtype in dtypes:
                devices = [d for d in state.devices if d in status and d in test_devices] if "device" in names else [None]
                for device in devices:
                    for extra in per_op[1](op) if per_op else [None]:
                        values = {"adapter": adapter, "op": op, "dtype": dtype, "device": device}
                        if per_op:
                            values[per_op[0]] = extra
                        reason = status.get(device) if device else None
                        marks = [pytest.mark.skip(reason=f"not run: {reason}")] if reason else []
                        if reason:
                            state.device_notes[(adapter.id, device)] = reason
                        params.append(pytest.param(*(values[n] for n in names), marks=marks))
                        ids.append("-".join(str(values[n].id if n == "adapter" else values[n]) for n in names))
    metafunc.parametrize(names, params, ids=ids)


def pytest_collection_modifyitems(config, items):
    """Where an adapter compiles per input shape (Adapter.compiles_per_shape: JAX), run each op
    and dtype's tests together (group_by_op_and_dtype). Not for the others: torch's check took
    about 7% longer in that order (docs/benchmarks.md)."""
    state = config.stash.get(_STATE, None)
    if state is not None and any(adapter.compiles_per_shape for adapter in state.adapters):
        group_by_op_and_dtype(items)


def group_by_op_and_dtype(items) -> None:
    """Sort the items by op, dtype and device, stably (test files keep their order within a
    group; items without an op come first). The tests of one op and dtype share a JIT
    framework's executables: together, they find them in memory, and pytest-xdist's
    `--dist load` hands each worker runs of consecutive items, so one worker, not both, needs
    them. The examples do not depend on the order (example_seed; --hypothesis-seed seeds each
    test on its own)."""
    def group(item):
        params = _params(item)
        return params.get("op", ""), params.get("dtype", ""), params.get("device", "")

    items.sort(key=group)


def _params(item) -> dict:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    # An empty parametrization (nothing applies) leaves pytest's NOTSET in the values.
    return {k: getattr(v, "id", None) if k == "adapter" else str(v) for k, v in callspec.params.items()
            if k != "data"}


def _nonconformance(excinfo) -> NonConformance | None:
    """The NonConformance behind a failure (Hypothesis may wrap several in a group)."""
    error = excinfo.value if excinfo else None
    while error is not None:
        if isinstance(error, NonConformance):
            return error
        if not isinstance(error, BaseExceptionGroup):
            return None
        error = next((e for e in error.exceptions if isinstance(e, (NonConformance, BaseExceptionGroup))), None)
    return None


def _counters(state) -> dict:
    """Cumulative counts in this process: cases drawn, implementation calls and seconds,
    and whatever the adapters report through an optional statistics() method."""
    counters = {"examples": DRAWN["cases"], "calls": compare.CALLS["count"], "call_seconds": compare.CALLS["seconds"]}
    for adapter in state.adapters:
        statistics = getattr(adapter, "statistics", None)
        if callable(statistics):
            counters.update({f"{adapter.id}:{k}": v for k, v in statistics().items()})
    return counters


_TIMING = pytest.StashKey[dict]()


def _matching_entries(state, item) -> list:
    """The expectations entries that list this test item."""
    params = _params(item)
    return [e for e in state.expectations if e.matches(item.originalname, params)]


HYPOTHESIS_LOCAL_CONSTANTS = None


def without_local_constants() -> None:
    """Keep Hypothesis from mixing literals of "local" modules into its draws.

    Hypothesis (6.131 and later) draws about 5% of integers and floats from the literal
    constants in the source of every imported module outside site-packages (test files
    excepted). Which modules those are depends on how normspec is installed (a checkout
    installed with `pip install -e` makes all of normspec local; the wheel tox and CI
    install makes none of it) and on which adapters a run imports: the same seed drew
    other examples under `--adapter keras --adapter tf-nn` than under `--adapter tf-nn`,
    and a checkout other examples than CI. The code under test is the frameworks, in
    site-packages, so those constants carry no information about it. Hypothesis has no
    setting for this; its private hook is replaced where it exists (else nothing changes,
    and tests/test_gate.py says so)."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    global HYPOTHESIS_LOCAL_CONSTANTS
    if not hasattr(providers, "_get_local_constants") or not hasattr(providers, "Constants"):
        return
    if HYPOTHESIS_LOCAL_CONSTANTS is None:
        HYPOTHESIS_LOCAL_CONSTANTS = providers._get_local_constants  # Hypothesis's own (tests/test_gate.py)
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None:
        cache.cache.clear()


def example_seed(item) -> int:
    """The ci profile's seed for one test item: from the test's name and its parameters,
    device excepted. The examples then do not depend on the path pytest was started from
    (Hypothesis's own derandomization hashes the node ID and the test's source), and CPU
    and CUDA runs draw the same examples."""
    params = {k: v for k, v in _params(item).items() if k != "device"}
    key = "|".join([item.originalname] + [f"{k}={params[k]}" for k in sorted(params)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    """Seed the ci profile's examples per item (example_seed), unless --hypothesis-seed is
    given; and do not shrink where an expectations entry lists the item: an expected failure
    only has to fail with its clause, and shrinking it cost a third of a run's time."""
    state = item.config.stash.get(_STATE, None)
    test = getattr(item, "obj", None)
    if state is None or not hasattr(test, "hypothesis"):
        yield
        return
    seeded = state.profile == "ci" and item.config.getoption("hypothesis_seed", None) is None
    if seeded:
        test._hypothesis_internal_use_seed = example_seed(item)
    own_settings = test._hypothesis_internal_use_settings
    if _matching_entries(state, item):
        test._hypothesis_internal_use_settings = settings(own_settings, phases=[
            p for p in own_settings.phases if p is not Phase.shrink])
    try:
        yield
    finally:
        test._hypothesis_internal_use_settings = own_settings
        if seeded:
            test._hypothesis_internal_use_seed = None


def pytest_runtest_setup(item):
    compare.TIMED_OUT.clear()
    state = item.config.stash.get(_STATE, None)
    if state is not None:
        item.stash[_TIMING] = dict(_counters(state), wall=time.perf_counter())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Apply the expectations and attach the result record to the report (it travels to
    the controller under pytest-xdist, where pytest_runtest_logreport collects it)."""
    outcome = yield
    rep = outcome.get_result()
    state = item.config.stash.get(_STATE, None)
    params = _params(item)
    if state is None or not params.get("adapter") or rep.when not in ("setup", "call"):
        return
    if rep.when == "setup" and not rep.skipped:
        return
    failure = _nonconformance(call.excinfo) if rep.failed else None
    cited = failure.clause if failure else None
    if failure is not None and failure.context is not None:
        failures.save(failure.context, always=bool(item.config.option.normspec_report))
    matching = _matching_entries(state, item)
    # Several entries may list one test (different causes in different configurations): the
    # one citing the failure's clause applies.
    entry = next((e for e in matching if e.clause == cited), matching[0] if matching else None)
    stale = None  # the entry that listed this test, which passed
    if entry is not None and rep.when == "call":
        if rep.failed and cited == entry.clause:
            rep.outcome, rep.wasxfail = "skipped", f"expected failure {entry.clause}: {entry.reason} ({entry.source})"
        elif rep.failed:
            rep.sections.append(("normspec", f"{entry.source} expects clause {entry.clause}, "
                                             f"but this failure cites {cited or 'no clause'}"))
        elif rep.passed and entry.intermittent:
            rep.sections.append(("normspec", f"{entry.source} (intermittent) did not fail this time"))
        elif rep.passed:
            stale, rep.outcome = entry.source, "failed"
            rep.longrepr = (f"listed expectation no longer fails: {entry.source} ({entry.clause}: {entry.reason}); "
                            f"remove the entry so the expectations file stays true")
    status = ("expected-failure" if hasattr(rep, "wasxfail") else "not-run" if rep.skipped
              else "fail" if rep.failed else "pass")
    if status == "fail":
        message = str(failure) if failure else str(rep.longrepr)[-4000:]
    elif status == "not-run" and isinstance(rep.longrepr, tuple):
        message = rep.longrepr[2]
    else:
        message = getattr(rep, "wasxfail", "")
    before = item.stash.get(_TIMING, None)
    timing = {}
    if before is not None:
        now = dict(_counters(state), wall=time.perf_counter())
        timing = {k: v - before.get(k, 0) for k, v in now.items()}
    cited_by_test = [c for name, value in item.user_properties if name == "normspec_clauses" for c in value]
    test_clauses = cited_by_test or clauses_for(params.get("op"), _marker_args(item.function, "clauses"))
    rep.user_properties.append(("normspec", dict(
        params, test=item.originalname, nodeid=item.nodeid, status=status, failed_clause=cited,
        clauses=[entry.clause] if status == "expected-failure" else test_clauses, message=message,
        stale_expectation=stale, timing=timing)))


def pytest_runtest_logreport(report):
    """Collect the result records; a test whose worker crashed (pytest-xdist) has none
    and is recorded as a failure, so the report stays complete."""
    state = _SESSION_STATE[0] if _SESSION_STATE else None
    if state is None:
        return
    record = next((value for name, value in report.user_properties if name == "normspec"), None)
    if record is not None:
        state.results.append(record)
    elif report.failed and report.when in ("setup", "call", "???") and "[" in report.nodeid:  # ??? = crashed
        params = _params_from_id(state, report.nodeid)
        if params:
            state.results.append(dict(params, test=report.nodeid.split("::")[-1].split("[")[0],
                                      nodeid=report.nodeid, status="fail", failed_clause=None, clauses=[],
                                      message=str(report.longrepr)[-2000:]))


def _params_from_id(state, nodeid: str) -> dict:
    """adapter, op, dtype, device parsed from a test ID such as test_x[torch-layer_norm-float32-cpu]."""
    test_id = nodeid.rsplit("[", 1)[-1].rstrip("]")
    for adapter in sorted(state.adapters, key=lambda a: -len(a.id)):
        if test_id.startswith(adapter.id + "-"):
            rest = test_id[len(adapter.id) + 1:].split("-")
            return dict(zip(("op", "dtype", "device"), rest), adapter=adapter.id)
    return {}


_SESSION_STATE: list = []


def pytest_sessionstart(session):
    _SESSION_STATE[:] = [session.config.stash[_STATE]]


def pytest_collection_finish(session):
    """Exempt what exists once the tests are collected (the frameworks, their modules, the
    collected items) from Python's cyclic garbage collector, which walked all of it in every
    full collection: 15 of them took 3.4 s of a torch float32 run, against 1.9 s for the 22
    after the freeze (timed with gc.callbacks). Objects made later are collected as before
    (the Flax adapters' release_compiled relies on that); no result changes."""
    gc.collect()
    gc.freeze()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(_STATE, None)
    if state is None or not state.results:
        return
    for result in state.results:  # under pytest-xdist the controller learns of devices from the results
        if result["status"] == "not-run" and result.get("device") and result["message"].startswith("not run: "):
            state.device_notes[(result["adapter"], result["device"])] = result["message"][len("not run: "):]
    text = report.summary_markdown(state)
    terminalreporter.section("normspec conformance summary")
    for line in text.splitlines():
        terminalreporter.write_line(line)
    if config.option.normspec_report:
        report.write(config.option.normspec_report, state)


def pytest_sessionfinish(session, exitstatus):
    """An empty run still leaves a report, so a gate can tell that nothing ran."""
    state = session.config.stash.get(_STATE, None)
    report_dir = session.config.option.normspec_report
    if state is not None and report_dir and not state.results and not hasattr(session.config, "workerinput"):
        report.write(report_dir, state)
