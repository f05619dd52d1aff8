"""The command-line options of the conformance suite, and the Suite they select: the
adapters, ops, dtypes, devices, profile and expectations of one run, and its results."""
from __future__ import annotations

import pytest

from normspec import expectations
from normspec.adapters import load_adapter
from normspec.dtypes import DTYPES
from normspec.errors import UsageError
from normspec.plugin.hypothesis_control import PROFILES
from normspec.registry import ALL_OP_NAMES, DEVICES


def add_options(parser) -> None:
    group = parser.getgroup("normspec", "normspec conformance suite")
    group.addoption("--adapter", action="append", default=None,
                    help="adapter to check: a built-in ID or package.module:attr (repeatable; default numpy)")
    group.addoption("--ops", default=None, help=f"comma-separated ops to check (default all: {','.join(ALL_OP_NAMES)})")
    group.addoption("--dtypes", default=None, help=f"comma-separated dtypes (default all: {','.join(DTYPES)})")
    group.addoption("--devices", default=",".join(DEVICES),
                    help=f"comma-separated devices (default {','.join(DEVICES)})")
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


class Suite:
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
        self.ops = _choices(option.ops, ALL_OP_NAMES, "ops")
        self.dtypes = _choices(option.dtypes, DTYPES, "dtypes")
        self.devices = _choices(option.devices, DEVICES, "devices")
        self.profile = option.normspec_profile
        self.results = []
        self.device_notes = {}

    def expectations_for(self, test: str, params: dict) -> list:
        """The expectations entries that list this test and parameters."""
        return [e for e in self.expectations if e.matches(test, params)]
