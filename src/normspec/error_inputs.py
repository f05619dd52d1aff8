"""Invalid configurations (spec ERR-1), built by breaking one thing in a valid case.

The registry row of each op names the kinds that apply to it (OpInfo.error_kinds).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from normspec.cases import Case
from normspec.dtypes import numpy_dtype

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


# More than one bad value per clause (ERR-1.3, ERR-1.4, ERR-1.5, ERR-1.6): kind -> (clause, the field it
# breaks, the invalid value). test_invalid_configuration_raises keeps one value per clause (CLAUSES above).
MORE_VALUES = {
    "eps_nan": ("ERR-1.3", "eps", float("nan")),
    "eps_inf": ("ERR-1.3", "eps", float("inf")),
    "eps_minus_inf": ("ERR-1.3", "eps", float("-inf")),
    "eps_tiny_negative": ("ERR-1.3", "eps", -1e-30),
    "eps_complex": ("ERR-1.3", "eps", 1e-5 + 1e-5j),
    "groups_zero": ("ERR-1.4", "num_groups", 0),
    "groups_negative": ("ERR-1.4", "num_groups", -3),
    "groups_fraction": ("ERR-1.4", "num_groups", 1.5),
    "groups_beyond_channels": ("ERR-1.4", "num_groups", 12),
    "normalized_shape_empty": ("ERR-1.5", "normalized_shape", ()),
    "normalized_shape_longer_than_rank": ("ERR-1.5", "normalized_shape", (1, 2, 5, 6)),
    "normalized_shape_leading_dims": ("ERR-1.5", "normalized_shape", (2, 5)),
    "momentum_negative": ("ERR-1.6", "momentum", -0.1),
    "momentum_nan": ("ERR-1.6", "momentum", float("nan")),
    "momentum_inf": ("ERR-1.6", "momentum", float("inf")),
}


def more_value_kinds(op: str) -> list:
    """The kinds of MORE_VALUES that apply to `op` (as OpInfo.error_kinds: eps for every op,
    groups for GroupNorm, normalized_shape for LayerNorm and RMSNorm, momentum for BatchNorm)."""
    fields = {"eps"} | {"batch_norm": {"momentum"}, "group_norm": {"num_groups"},
                        "layer_norm": {"normalized_shape"}, "rms_norm": {"normalized_shape"}}.get(op, set())
    return [kind for kind, (_, name, _) in MORE_VALUES.items() if name in fields]


def more_value_case(kind: str, op: str, dtype: str, channel_axis: int, *, running_stats: bool = True):
    """The valid case with the invalid value of MORE_VALUES[kind], and the clause that rejects it.
    A normalized_shape value comes with weight and bias of that shape, so that only ERR-1.5 applies
    (an empty shape keeps no weight or bias)."""
    clause, name, value = MORE_VALUES[kind]
    case = valid_case(op, dtype, channel_axis, running_stats=running_stats)
    if name == "eps":
        return dataclasses.replace(case, eps=value), clause
    if name == "momentum":
        return dataclasses.replace(case, momentum=value), clause
    if name == "num_groups":
        return dataclasses.replace(case, attrs={"num_groups": value}), clause
    np_dtype = case.inputs[0].dtype
    params = dict(case.params, weight=np.ones(value, np_dtype) if value else None)
    if op != "rms_norm":  # the interface's RMSNorm has no bias (RMS-3)
        params["bias"] = np.zeros(value, np_dtype) if value else None
    return dataclasses.replace(case, attrs={"normalized_shape": value}, params=params), clause


def one_value_per_slice_case(op: str, dtype: str, channel_axis: int) -> Case:
    """A training case whose every slice has one element under BN-5 (BatchNorm: one sample of
    shape (1, 3)) or IN-3 (InstanceNorm: shape (2, 3, 1), one position), with loaded running
    statistics that an error must leave unchanged (ERR-1, BN-5.2)."""
    np_dtype = numpy_dtype(dtype)
    if op == "batch_norm":
        x = np.array([[0.5, -1.25, 3.0]], np_dtype)
    else:
        x = np.array([[[0.5], [-1.25], [3.0]], [[2.0], [0.25], [-0.75]]], np_dtype)
        x = x if channel_axis == 1 else np.moveaxis(x, 1, -1).copy()
    params = {"weight": np.array([1.5, -0.5, 2.0], np_dtype), "bias": np.array([0.25, 1.0, -2.0], np_dtype),
              "running_mean": np.array([0.5, -0.25, 1.0], np_dtype),
              "running_var": np.array([2.0, 0.5, 1.5], np_dtype)}
    return Case(op=op, dtype=dtype, inputs=[x], training=[True], eps=1e-5, params=params, momentum=0.25,
                channel_axis=channel_axis)


# Calls a valid layer must reject (ERR-1.1, ERR-1.2, ERR-1.7, ERR-1.9) with the clause, built from the layer's
# valid input x: the layer's state must survive them unchanged (ERR-1).
BAD_CALLS = {
    "integer_input": "ERR-1.1",
    "channel_count": "ERR-1.2",
    "rank_too_high": "ERR-1.7",
    "zero_batch": "ERR-1.9",
}


def bad_call_input(kind: str, x: np.ndarray, channel_axis: int) -> np.ndarray:
    """The input of BAD_CALLS[kind] for a layer built for inputs like `x` (channel axis 1 or -1)."""
    if kind == "integer_input":
        return np.round(x.astype(np.float64) * 4).astype(np.int32)
    if kind == "channel_count":
        return np.delete(x, 0, axis=channel_axis)
    if kind == "rank_too_high":
        return _add_axes(x, 6 - x.ndim, channel_axis)
    if kind == "zero_batch":
        return x[:0]
    raise ValueError(f"bad call kind {kind!r} unknown; choose from {sorted(BAD_CALLS)}")


def _add_axes(x: np.ndarray, count: int, channel_axis: int) -> np.ndarray:
    """x with `count` more spatial axes of size 2 (rank 6 for count = 6 - rank), channels kept in place."""
    for _ in range(count):
        x = np.stack([x, x], axis=-1 if channel_axis == 1 else -2)
    return x


# Inputs of a rank outside the op's range (ERR-1.7): BatchNorm and GroupNorm 2 to 5, InstanceNorm 3 to 5.
BAD_RANKS = {"batch_norm": (1, 6), "group_norm": (1, 6), "instance_norm": (2, 6)}


def bad_rank_case(op: str, dtype: str, channel_axis: int, rank: int, *, running_stats: bool = True) -> Case:
    """The valid case of `op` with an input of `rank` (6 channels kept on the channel axis where the
    rank has room for it: a rank-1 input is its 6 channels alone)."""
    case = valid_case(op, dtype, channel_axis, running_stats=running_stats)
    x = case.inputs[0]
    if rank == 1:
        x = np.linspace(-1, 1, 6).astype(x.dtype)
    elif rank == 2:
        x = x[..., 0] if channel_axis == 1 else x[:, 0, :]
    else:
        x = _add_axes(x, rank - x.ndim, channel_axis)
    return dataclasses.replace(case, inputs=[np.ascontiguousarray(x)])


def empty_slice_case(op: str, dtype: str, channel_axis: int, kind: str, *, running_stats: bool = True) -> Case:
    """ERR-1.9: `kind` "zero_batch" (no slices: a zero-size batch, or leading dimension for
    LayerNorm and RMSNorm) or "empty_slice" (a zero-size dimension among the reduced axes: the spatial
    axis of BatchNorm, GroupNorm and InstanceNorm, the normalized axis of LayerNorm and RMSNorm)."""
    case = valid_case(op, dtype, channel_axis, running_stats=running_stats)
    x = case.inputs[0]
    if kind == "zero_batch":
        return dataclasses.replace(case, inputs=[np.ascontiguousarray(x[:0])])
    if op in ("layer_norm", "rms_norm"):
        params = dict(case.params, weight=np.ones(0, x.dtype))
        if op == "layer_norm":
            params["bias"] = np.zeros(0, x.dtype)
        return dataclasses.replace(case, inputs=[np.ascontiguousarray(x[..., :0])],
                                   attrs={"normalized_shape": (0,)}, params=params)
    spatial = x[:, :, :0] if channel_axis == 1 else x[:, :0, :]
    return dataclasses.replace(case, inputs=[np.ascontiguousarray(spatial)])
