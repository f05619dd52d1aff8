"""normspec.zoo: deliberately broken implementations the conformance suite must kill.

Each mutant is a small FunctionalAdapter subclass (NumPy, CPU) of the correct kernel
in `normspec.zoo.correct`, with one bug, an id "mutant-<name>", the clause it
violates and the clauses a failure may cite (`caught_by`). The themes:

    mutants_numerics  eps, variance, precision, dtypes, degenerate inputs, tiled kernels, ERR-1
    mutants_mixed     mixed precision: float32 parameters and running statistics with half inputs
    mutants_layout    reduction axes, channel layout, grouping, the affine step, RMSNorm
    mutants_state     training and evaluation, running statistics, momentum, BN-5
    mutants_backward  the backward pass: GRAD-3/4/5 paths, parameter sums, GRAD-7, GRAD-8.1
    scalers           the fitted scalers: variance estimator and algorithm, chunk merging,
                      feature range, constant features (and their correct streaming kernel)
    data_parallel     synchronized BatchNorm: the merge of per-replica statistics, the global
                      count, replicas' running statistics (and their correct merging kernel)

    python -m normspec.zoo kill           the kill matrix of the ci profile
    python -m normspec.zoo false-alarms   correct implementations under many seeds
"""
from __future__ import annotations

import inspect

from . import data_parallel, mutants_backward, mutants_layout, mutants_mixed, mutants_numerics, mutants_state, scalers
from ._base import NUMERIC, Mutant
from .correct import CORRECT


def _declared(module) -> list:
    """The Mutant subclasses of `module` that violate a clause (not their shared bases), in the
    order they are written."""
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, Mutant) and obj.__module__ == module.__name__ and obj.violates]
    return sorted(found, key=lambda cls: inspect.getsourcelines(cls)[1])


MUTANTS = tuple(cls for module in (mutants_numerics, mutants_mixed, mutants_layout, mutants_state, mutants_backward, scalers,
                                   data_parallel)
                for cls in _declared(module))


def target(cls) -> str:
    """The `package.module:attr` target that names `cls` to the suite (--adapter)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def by_name(name: str):
    """The mutant whose id is `name` or "mutant-" + `name`."""
    for cls in MUTANTS:
        if cls.id in (name, f"mutant-{name}"):
            return cls
    raise KeyError(f"no mutant {name!r}; choose from {', '.join(c.id for c in MUTANTS)}")


__all__ = ["MUTANTS", "CORRECT", "Mutant", "NUMERIC", "target", "by_name"]
