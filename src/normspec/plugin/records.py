"""The result record of each test (what report.json lists): its parameters, status, clauses,
message and timing counters; and the record of a test whose worker crashed."""
from __future__ import annotations

import time

from normspec.plugin.parametrize import params_from_id
from normspec.registry import clauses_for
from normspec.run import CURRENT


def counters(adapters) -> dict:
    """Cumulative counts in this process: cases drawn, implementation calls and seconds,
    and whatever the adapters report through an optional statistics() method."""
    values = CURRENT.counters.snapshot()
    for adapter in adapters:
        statistics = getattr(adapter, "statistics", None)
        if callable(statistics):
            values.update({f"{adapter.id}:{k}": v for k, v in statistics().items()})
    return values


def timing_start(adapters) -> dict:
    """The counters and the clock at the start of a test."""
    return dict(counters(adapters), wall=time.perf_counter())


def timing_since(adapters, start: dict | None) -> dict:
    """How much each counter (and the wall clock) moved since `start`."""
    if start is None:
        return {}
    now = dict(counters(adapters), wall=time.perf_counter())
    return {k: v - start.get(k, 0) for k, v in now.items()}


def record(*, params: dict, item, status: str, failure, cited: str | None, entry, message: str,
           stale: str | None, timing: dict, marked_clauses: tuple) -> dict:
    """The result record of one test item. Its clauses: those the test cited while it ran
    (user_properties), else its @clauses marker's that apply to its op; an expected failure
    lists the clause of the entry that applied."""
    cited_by_test = [c for name, value in item.user_properties if name == "normspec_clauses" for c in value]
    test_clauses = cited_by_test or clauses_for(params.get("op"), marked_clauses)
    return dict(params, test=item.originalname, nodeid=item.nodeid, status=status, failed_clause=cited,
                clauses=[entry.clause] if status == "expected-failure" else test_clauses, message=message,
                stale_expectation=stale, timing=timing)


def message_of(rep, status: str, failure) -> str:
    """What the record says: the failure, the skip reason, or the expected failure's entry."""
    if status == "fail":
        return str(failure) if failure else str(rep.longrepr)[-4000:]
    if status == "not-run" and isinstance(rep.longrepr, tuple):
        return rep.longrepr[2]
    return getattr(rep, "wasxfail", "")


def crashed_record(adapters, report) -> dict | None:
    """A failure record for a test whose worker crashed (pytest-xdist reports it without the
    record), so the report stays complete; None if the report is not such a failure."""
    if not (report.failed and report.when in ("setup", "call", "???") and "[" in report.nodeid):  # ??? = crashed
        return None
    params = params_from_id(adapters, report.nodeid)
    if not params:
        return None
    return dict(params, test=report.nodeid.split("::")[-1].split("[")[0], nodeid=report.nodeid, status="fail",
                failed_clause=None, clauses=[], message=str(report.longrepr)[-2000:])
