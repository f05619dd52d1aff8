"""The parts of the pytest plugin (normspec.pytest_plugin holds only its hooks), one job each:

selection            the command-line options and what they select (Suite)
hypothesis_control   Hypothesis profiles, per-item seeds, shrinking, local constants
parametrize          test parametrization over adapters, ops, dtypes and devices
outcomes             a test's outcome once the expectations files are applied
records              the result record of each test, with its timing counters
compact_reports      a NonConformance shown by its message, not a traceback
"""
