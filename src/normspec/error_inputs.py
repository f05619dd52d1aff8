"""Invalid configurations (spec ERR-1), built by breaking one thing in a valid case.

The registry row of each op names the kinds that apply to it (OpInfo.error_kinds).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from normspec.cases import Case, numpy_dtype

CLAUSES = {
    "negative_eps": "ERR-1.3",
    "momentum_out_of_range": "ERR-1.6",
    "weight_shape": "ERR-1.2",
    "groups_not_dividing": "ERR-1.4",
    "normalized_shape_mismatch": "ERR-1.5",
}


def valid_case(op: str, dtype: str, channel_axis: int, *, running_stats: bool = True) -> Case:
    """A small valid case: 2 samples, 6 channels (or 6 features), 5 positions; InstanceNorm
    tracks running statistics only with `running_stats` (the adapter's capability)."""
    np_dtype = numpy_dtype(dtype)
    rng = np.random.default_rng(0)
    if op in ("layer_norm", "rms_norm"):
        shape, attrs, params_shape = (2, 5, 6), {"normalized_shape": (6,)}, (6,)
    else:
        shape = (2, 6, 5) if channel_axis == 1 else (2, 5, 6)
        attrs, params_shape = ({"num_groups": 3} if op == "group_norm" else {}), (6,)
    params = {"weight": np.ones(params_shape, np_dtype), "bias": np.zeros(params_shape, np_dtype)}
    if op == "batch_norm" or (op == "instance_norm" and running_stats):
        params.update(running_mean=np.zeros(6, np_dtype), running_var=np.ones(6, np_dtype))
    elif op == "instance_norm":
        params.update(running_mean=None, running_var=None)
    if op == "rms_norm":
        params["bias"] = None
    return Case(op=op, dtype=dtype, inputs=[rng.standard_normal(shape).astype(np_dtype)], training=[True],
                eps=1e-5, attrs=attrs, params=params, momentum=0.1, channel_axis=channel_axis)


def error_case(kind: str, op: str, dtype: str, channel_axis: int, *, running_stats: bool = True) -> tuple[Case, str]:
    """The valid case with one invalid choice of `kind`, and the clause that rejects it."""
    case = valid_case(op, dtype, channel_axis, running_stats=running_stats)
    if kind == "negative_eps":
        case = dataclasses.replace(case, eps=-1.0)
    elif kind == "momentum_out_of_range":
        case = dataclasses.replace(case, momentum=1.5)
    elif kind == "weight_shape":
        weight = case.params["weight"]
        case = dataclasses.replace(case, params=dict(case.params, weight=np.ones(weight.size + 1, weight.dtype)))
    elif kind == "groups_not_dividing":
        case = dataclasses.replace(case, attrs={"num_groups": 4})
    elif kind == "normalized_shape_mismatch":
        case = dataclasses.replace(case, attrs={"normalized_shape": (7,)})
    else:
        raise ValueError(f"error kind {kind!r} unknown; choose from {sorted(CLAUSES)}")
    return case, CLAUSES[kind]
