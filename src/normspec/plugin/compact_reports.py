"""A failing test whose error is a NonConformance is reported by its message (which holds
the evidence and the reproduction) and Hypothesis's notes, not by a traceback through the
suite's own frames: formatting that traceback parses each frame's source, several times a
failing test, and most of those failures are expected ones whose report is discarded.
--tb=long, native or line keep pytest's own format."""
from __future__ import annotations

import pytest

from normspec.compare import NonConformance


class CompactNonConformanceReports:
    """Registered by the plugin (a class: the plugin module's own pytest_runtest_makereport is
    the hook wrapper that applies the expectations)."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        own = getattr(item, "repr_failure", None)
        compact = own is not None and item.config.getoption("tbstyle", "auto") in ("auto", "short")
        if compact:
            item.repr_failure = lambda excinfo, **options: compact_repr(excinfo) or own(excinfo, **options)
        try:
            yield
        finally:
            if compact:
                del item.repr_failure


def compact_repr(excinfo):
    """The report of a NonConformance failure: its message and Hypothesis's notes (None for
    any other error, which keeps pytest's report)."""
    error = excinfo.value
    if not isinstance(error, NonConformance):
        return None
    longrepr = excinfo.getrepr(style="value", funcargs=False)
    if getattr(error, "__notes__", None):
        longrepr.addsection("Hypothesis", "\n".join(error.__notes__))
    return longrepr
