"""The pytest plugin that runs normspec's conformance suite against adapters: its hooks,
each handing its work to a part in normspec.plugin.

Loaded by the repository's conftest.py and by `normspec check`; in another project,
`pytest -p normspec.pytest_plugin --pyargs normspec.tests.conformance --adapter ID`.
Tests ask for the fixtures `adapter`, `op`, `dtype`, `device` and are parametrized
over what the selected adapters cover; they cite clauses with
@pytest.mark.clauses(...), narrow ops with @pytest.mark.ops(...) and need
capabilities with @pytest.mark.requires(...).
"""
from __future__ import annotations

import gc
import os

import pytest

from normspec import clauses, failures, report, shape_pool
from normspec.plugin import hypothesis_control, outcomes, parametrize, records
from normspec.plugin.compact_reports import CompactNonConformanceReports
from normspec.plugin.selection import Suite, add_options
from normspec.run import CURRENT

_SUITE = pytest.StashKey[Suite]()
_TIMING = pytest.StashKey[dict]()

MARKERS = ("clauses(*ids): spec clauses the test checks", "ops(*names): ops the test applies to",
           "dtypes(*names): dtypes the test applies to", "devices(*names): devices the test applies to",
           "per_op(name, function): one more parameter `name`, with values function(op)",
           "requires(*capabilities): Capabilities flags the adapter needs")


def pytest_addoption(parser):
    add_options(parser)


def pytest_configure(config):
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    pinned = config.option.spec_version
    if pinned and pinned != clauses.spec_version():
        raise pytest.UsageError(f"--spec-version {pinned}: the installed normspec carries spec "
                                f"{clauses.spec_version()}; install the normspec release of that spec version")
    suite = Suite(config)
    config.stash[_SUITE] = suite
    config.pluginmanager.register(CompactNonConformanceReports(), "normspec-compact-reports")
    if config.option.normspec_report:
        os.environ["NORMSPEC_FAILURE_DIR"] = os.path.join(os.path.abspath(config.option.normspec_report), "failures")
    CURRENT.settings.call_timeout_s = config.option.call_timeout
    shape_pool.set_size(shape_pool.SIZES[suite.profile])
    hypothesis_control.load_profile(suite.profile, config.option.examples)


def pytest_generate_tests(metafunc):
    parametrize.parametrize(metafunc, metafunc.config.stash[_SUITE])


def pytest_collection_modifyitems(config, items):
    """Where an adapter compiles per input shape (Adapter.compiles_per_shape: JAX), run each op
    and dtype's tests together, which share its executables (docs/benchmarks.md says why not
    for the others)."""
    suite = config.stash.get(_SUITE, None)
    if suite is not None and any(adapter.compiles_per_shape for adapter in suite.adapters):
        parametrize.group_by_op_and_dtype(items)


def pytest_sessionstart(session):
    CURRENT.suite = session.config.stash[_SUITE]


def pytest_collection_finish(session):
    """Exempt what exists once the tests are collected (the frameworks, their modules, the
    collected items) from Python's cyclic garbage collector, which would walk all of it in
    every full collection (docs/benchmarks.md). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    """Seed the ci profile's examples per item, unless --hypothesis-seed is given; and do not
    shrink where an expectations entry lists the item."""
    suite = item.config.stash.get(_SUITE, None)
    test = getattr(item, "obj", None)
    if suite is None or not hasattr(test, "hypothesis"):
        yield
        return
    params = parametrize.item_params(item)
    seeded = suite.profile == "ci" and item.config.getoption("hypothesis_seed", None) is None
    seed = hypothesis_control.example_seed(item.originalname, params) if seeded else None
    with hypothesis_control.item_settings(test, seed=seed,
                                          shrink=not suite.expectations_for(item.originalname, params)):
        yield


def pytest_runtest_setup(item):
    CURRENT.counters.timed_out.clear()
    suite = item.config.stash.get(_SUITE, None)
    if suite is not None:
        item.stash[_TIMING] = records.timing_start(suite.adapters)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Apply the expectations and attach the result record to the report (it travels to
    the controller under pytest-xdist, where pytest_runtest_logreport collects it)."""
    outcome = yield
    rep = outcome.get_result()
    suite = item.config.stash.get(_SUITE, None)
    params = parametrize.item_params(item)
    if suite is None or not params.get("adapter") or rep.when not in ("setup", "call"):
        return
    if rep.when == "setup" and not rep.skipped:
        return
    failure = outcomes.nonconformance_of(call.excinfo) if rep.failed else None
    cited = failure.clause if failure else None
    if failure is not None and failure.context is not None:
        failures.save(failure.context, always=bool(item.config.option.normspec_report))
    entry, stale = outcomes.apply_expectations(rep, suite.expectations_for(item.originalname, params), cited)
    status = outcomes.status_of(rep)
    rep.user_properties.append(("normspec", records.record(
        params=params, item=item, status=status, failure=failure, cited=cited, entry=entry,
        message=records.message_of(rep, status, failure), stale=stale,
        timing=records.timing_since(suite.adapters, item.stash.get(_TIMING, None)),
        marked_clauses=parametrize.marker_args(item.function, "clauses"))))


def pytest_runtest_logreport(report):
    """Collect the result records; a test whose worker crashed (pytest-xdist) has none
    and is recorded as a failure, so the report stays complete."""
    suite = CURRENT.suite
    if suite is None:
        return
    record = next((value for name, value in report.user_properties if name == "normspec"), None)
    if record is None:
        record = records.crashed_record(suite.adapters, report)
    if record is not None:
        suite.results.append(record)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    suite = config.stash.get(_SUITE, None)
    if suite is None or not suite.results:
        return
    for result in suite.results:  # under pytest-xdist the controller learns of devices from the results
        message = result["message"].removeprefix("Skipped: ")  # pytest's prefix of a skip's message
        if result["status"] == "not-run" and result.get("device") and message.startswith("not run: "):
            suite.device_notes[(result["adapter"], result["device"])] = message[len("not run: "):]
    text = report.summary_markdown(suite)
    terminalreporter.section("normspec conformance summary")
    for line in text.splitlines():
        terminalreporter.write_line(line)
    if config.option.normspec_report:
        report.write(config.option.normspec_report, suite)


def pytest_sessionfinish(session, exitstatus):
    """An empty run still leaves a report, so a gate can tell that nothing ran."""
    suite = session.config.stash.get(_SUITE, None)
    report_dir = session.config.option.normspec_report
    if suite is not None and report_dir and not suite.results and not hasattr(session.config, "workerinput"):
        report.write(report_dir, suite)
