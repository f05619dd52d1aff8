"""Accuracy measurements: for an adapter, per op and dtype, the error of its outputs over the bound
of NUM-1.1, against the conditioning kappa (NUM-1.2) and against the reduction length n.

The cases are a deterministic grid (no Hypothesis): slices of a fixed Gaussian pattern of unit
spread moved by a common offset, which sets kappa; one training call, no affine parameters. Each
point is the worst element's |observed - exact| / bound (normspec.oracle), with the kappa and n
of its slice: above 1 is a violation of NUM-1.1. `normspec accuracy` draws them
(normspec.accuracy_plot)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from normspec import oracle
from normspec.cases import Case
from normspec.dtypes import numpy_dtype
from normspec.driver import observe
from normspec.registry import OPS

# kappa grid (offset / spread, about kappa) and n grid; the fixed n and kappa of the other sweep.
KAPPAS = tuple(float(k) for k in np.logspace(0, 5, 16))
LENGTHS = (4, 16, 64, 256, 1024, 4096)
FIXED_N, FIXED_KAPPA = 256, 1000.0
# Half precision keeps about 3 decimal digits: beyond this offset the spread rounds away.
_MAX_KAPPA = {"float16": 300.0, "bfloat16": 30.0}


@dataclass
class Point:
    target: str  # the adapter id
    op: str
    dtype: str
    sweep: str  # "kappa" or "n"
    kappa: float  # the conditioning of the worst element's slice (Steps.conditioning)
    n: int  # the reduction length
    ratio: float  # worst |observed - exact| / bound; inf for a NaN or Inf where a finite value is due
    error: str = ""  # why no ratio (the call raised, or the output had the wrong shape or dtype)


def _slices(op: str, n: int, channel_axis: int):
    """(shape, attrs, slice axis layout) of an input of 4 slices of length n for `op`."""
    if op in ("layer_norm", "rms_norm"):
        return (4, n), {"normalized_shape": (n,)}
    if op == "batch_norm":
        return (n, 4), {}  # rank 2: the channel axis is 1 = -1
    if op == "group_norm":
        shape = (4, 2, n // 2) if channel_axis == 1 else (4, n // 2, 2)
        return shape, {"num_groups": 1}
    return ((4, 1, n) if channel_axis == 1 else (4, n, 1)), {}  # instance_norm


def case(op: str, dtype: str, n: int, offset: float, channel_axis: int, seed: int = 0) -> Case:
    """One training call of `op` on 4 slices of length n: offset + z with z Gaussian of unit spread."""
    shape, attrs = _slices(op, n, channel_axis)
    z = np.random.default_rng(seed).standard_normal(shape)
    x = (offset + z).astype(numpy_dtype(dtype))
    params = {"weight": None, "bias": None}
    if OPS[op].stateful:
        params.update(running_mean=None, running_var=None)
    return Case(op=op, dtype=dtype, inputs=[x], training=[True], eps=1e-5, attrs=attrs, params=params,
                momentum=0.1, channel_axis=channel_axis)


def measure_case(adapter, test_case: Case, device: str = "cpu") -> tuple:
    """(ratio, kappa, n) of the worst element of one case, or (nan, nan, n, error text)."""
    x = test_case.inputs[0]
    result, steps = oracle.reference_step(test_case, x, *oracle.initial_state(test_case), True, 0,
                                          adapter.conventions.running_var_estimator)
    bound = oracle.output_bound(test_case, steps, result.output)
    n = int(steps.reduction_length)
    try:
        observed = observe(adapter, test_case, device)
    except Exception as error:  # a raise, a wrong dtype or shape: no ratio, the reason kept
        return float("nan"), float("nan"), n, str(error).splitlines()[0][:200]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ratios = np.abs(observed - result.output) / bound
    ratios = np.where(np.isfinite(observed), ratios, np.inf)
    worst = np.unravel_index(int(np.argmax(ratios)), ratios.shape)
    return float(ratios[worst]), float(np.asarray(steps.conditioning)[worst]), n, ""


def measure(adapter, ops, dtypes, device: str = "cpu") -> list:
    """Every Point of both sweeps for the adapter's ops and dtypes among `ops` and `dtypes`."""
    points = []
    axis = adapter.conventions.channel_axis
    for op in ops:
        if (op not in adapter.capabilities.ops or not adapter.capabilities.same_dtype
                or (op == "batch_norm" and not adapter.capabilities.batch_norm_training)):
            continue  # the sweeps call with parameters in the input's dtype
        for dtype in dtypes:
            if dtype not in adapter.capabilities.dtypes_for(op):
                continue
            grid = [("kappa", FIXED_N, k) for k in KAPPAS if k <= _MAX_KAPPA.get(dtype, np.inf)]
            grid += [("n", n, min(FIXED_KAPPA, _MAX_KAPPA.get(dtype, np.inf))) for n in LENGTHS]
            for sweep, n, kappa in grid:
                ratio, measured, length, error = measure_case(adapter, case(op, dtype, n, kappa, axis), device)
                points.append(Point(adapter.id, op, dtype, sweep, measured if np.isfinite(measured) else kappa,
                                    length, ratio, error))
    return points


def save(points: list, path) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        json.dump([asdict(p) for p in points], stream, indent=1, default=float)


def load(path) -> list:
    with open(path, encoding="utf-8") as stream:
        return [Point(**p) for p in json.load(stream)]
