"""What every mutant shares: the correct kernel it breaks and its declarations."""
from __future__ import annotations

from normspec import clauses
from normspec.adapters import Capabilities

from .kernel import TwoPassKernel

# The clauses a differential check cites when outputs disagree with the reference:
# NUM-1.1 (test_forward_matches_reference, and the finite slices of the NaN/Inf test),
# NUM-1.4 (test_exact_statistics) and NUM-3.2 (test_constant_slices, whose slices have
# zero variance), or NUM-3.1 there when the wrong value is NaN or Inf.
NUMERIC = frozenset({"NUM-1.1", "NUM-1.4", "NUM-3.2", "NUM-3.1"})
# A mutant that normalizes over the wrong set of elements is also seen by NaN/Inf
# propagation, which checks exactly which outputs share a slice (NUM-4.1, NUM-4.2).
SLICES = NUMERIC | {"NUM-4.1", "NUM-4.2"}


def ops(*names: str, **flags) -> Capabilities:
    """The capabilities of a mutant: the ops it implements (where its bug lives), with the
    correct kernel's flags (cumulative average, InstanceNorm running statistics).

    A mutant whose bug does not depend on the dtype and that only one test can kill (the
    ERR-1 checks, which run in float32) or none yet (a `gap`) declares float32 alone, so
    that its run does not repeat every other test in four dtypes."""
    flags = {"cumulative_average": True, "instance_norm_running_stats": True, **flags}
    return Capabilities(ops=names, **flags)


def backward(*names: str, **flags) -> Capabilities:
    """The capabilities of a backward mutant: `ops` with a `vjp` for the same ops, so that
    tests/conformance/test_backward.py (which runs first) sees the bug."""
    return ops(*names, backward_ops=names, **flags)


class Mutant(TwoPassKernel):
    """A deliberately broken implementation: the correct two-pass kernel with one bug.

    Subclasses set `id` ("mutant-<name>"), `violates` (the spec clause the bug breaks),
    `caught_by` (the clauses a failure may cite for the kill to count: the violated
    clause where a test checks it directly, and the clauses of the checks that see the
    symptom), `capabilities` (the ops it implements) and override one step. The
    docstring names the bug. `gap` marks a mutant the suite does not kill yet.
    """

    framework = "numpy"
    violates: str = ""
    caught_by: frozenset = frozenset()
    base = TwoPassKernel  # the correct implementation this one breaks
    # Set on a mutant the suite cannot kill yet: what the suite is missing. Such a mutant is
    # expected to survive; once it is killed, the mark is stale (tests/test_zoo.py says so).
    gap: str = ""

    def __init_subclass__(cls, **kwargs):
        """Each mutant's docstring ends with the clause it violates (and its gap, if any)."""
        super().__init_subclass__(**kwargs)
        if cls.violates and cls.__doc__ and "Violates " not in cls.__doc__:
            title = clauses.index()[cls.violates].title if cls.violates in clauses.index() else "unknown clause"
            cls.__doc__ = cls.__doc__.rstrip() + f"\n\n    Violates {cls.violates} ({title})."
            if cls.gap:
                cls.__doc__ += f" Survives the suite: {cls.gap}."
