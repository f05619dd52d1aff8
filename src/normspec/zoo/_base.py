"""What every mutant shares: the correct kernel it breaks and its declarations."""
from __future__ import annotations

from normspec.adapters import Capabilities

from .correct import TwoPassKernel

# The clauses a differential check cites when outputs disagree with the reference:
# NUM-1.1 (test_forward_matches_reference), NUM-1.4 (test_exact_statistics) and
# NUM-3.2 (test_constant_slices, whose slices have zero variance).
NUMERIC = frozenset({"NUM-1.1", "NUM-1.4", "NUM-3.2"})


def ops(*names: str, **flags) -> Capabilities:
    """The capabilities of a mutant: the ops it implements (where its bug lives), with the
    correct kernel's flags (cumulative average, InstanceNorm running statistics)."""
    flags = {"cumulative_average": True, "instance_norm_running_stats": True, **flags}
    return Capabilities(ops=names, **flags)


class Mutant(TwoPassKernel):
    """A deliberately broken implementation: the correct two-pass kernel with one bug.

    Subclasses set `id` ("mutant-<name>"), `violates` (the spec clause the bug breaks),
    `caught_by` (the clauses a failure may cite for the kill to count: the violated
    clause where a test checks it directly, and the clauses of the checks that see the
    symptom), `capabilities` (the ops it implements) and override one step. The
    docstring names the bug.
    """

    framework = "numpy"
    violates: str = ""
    caught_by: frozenset = frozenset()
    base = TwoPassKernel  # the correct implementation this one breaks
