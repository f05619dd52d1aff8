"""The one place that holds a run's settings and counters (one run per process).

The plugin configures `CURRENT.settings` from the command line; the call harness, the
strategies and the shape pool read them; the counters feed `normspec bench` and the
per-test timing of report.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    call_timeout_s: float = 60.0  # --call-timeout: a call into the implementation that takes longer fails
    shape_pool_size: int = 32  # shapes per op pool (normspec.shape_pool.SIZES by profile)


@dataclass
class Counters:
    cases_drawn: int = 0  # examples run
    calls: int = 0  # calls into implementations
    call_seconds: float = 0.0  # time spent inside them
    # Adapters that timed out in the current test: later calls fail at once, so that
    # Hypothesis's shrinking does not wait out the timeout again and again.
    timed_out: set = field(default_factory=set)

    def snapshot(self) -> dict:
        """The cumulative counts as report.json's timing fields."""
        return {"examples": self.cases_drawn, "calls": self.calls, "call_seconds": self.call_seconds}


@dataclass
class Run:
    settings: Settings = field(default_factory=Settings)
    counters: Counters = field(default_factory=Counters)
    suite: object = None  # the plugin's normspec.selection.Suite for this session, once it starts


CURRENT = Run()
