"""The single source of truth for ops: one row per op, written with keyword fields as
PyTorch's OpInfo rows are, that the generic tests, the strategies, the driver and the
reports loop over; and the clause prefixes they cite.

A new op is a spec section, a reference file and one row here. The fitted scalers (spec/scalers.md)
have a table of their own, SCALERS: they have no slices, eps or affine parameters, which every
layer test assumes (docs/design/scalers.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from normspec import reference, tolerance
from normspec.dtypes import DTYPES, HALF_DTYPES

# Clause families that apply to every op; an op's own family is OpInfo.prefix.
GENERIC_PREFIXES = ("GEN", "NORM", "NUM", "ERR", "GRAD")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True, kw_only=True)
class OpInfo:
    name: str
    prefix: str  # the op's clause family, e.g. "BN"
    clauses: tuple  # the op's own clauses, cited by every test of the op
    reference: Callable
    vjp: Callable  # the reference VJP (spec/gradients.md), the forward's arguments after dy
    stateful: bool  # built as a layer with running statistics (BN-4, IN-3)
    has_channel_axis: bool  # has a channel axis that follows the adapter's layout
    centring: bool  # subtracts the mean (all but RMSNorm)
    ranks: tuple  # smallest and largest input rank
    shape_attr: str | None  # the attribute naming the normalized shape or the groups
    error_kinds: tuple = ()  # invalid configurations it must reject (normspec.error_inputs, spec ERR-1)
    independence_clause: str | None = None  # the clause saying each sample is normalized alone
    has_bias: bool = True  # the adapter interface passes a bias (RMSNorm's has none: RMS-3)

    @property
    def defining_clause(self) -> str:
        """The op's first clause, cited when a call into the implementation fails."""
        return self.clauses[0]


OPS = {
    row.name: row
    for row in (
        OpInfo(name="batch_norm", prefix="BN", clauses=("BN-1", "BN-2", "BN-3", "BN-4"),
               reference=reference.batch_norm, vjp=reference.batch_norm_vjp,
               stateful=True, has_channel_axis=True, centring=True, ranks=(2, 5), shape_attr=None,
               error_kinds=("negative_eps", "momentum_out_of_range", "weight_shape")),
        OpInfo(name="layer_norm", prefix="LN", clauses=("LN-1", "LN-2"),
               reference=reference.layer_norm, vjp=reference.layer_norm_vjp,
               stateful=False, has_channel_axis=False, centring=True, ranks=(1, 4), shape_attr="normalized_shape",
               error_kinds=("negative_eps", "normalized_shape_mismatch", "weight_shape"),
               independence_clause="LN-2"),
        OpInfo(name="group_norm", prefix="GN", clauses=("GN-1", "GN-2"),
               reference=reference.group_norm, vjp=reference.group_norm_vjp,
               stateful=False, has_channel_axis=True, centring=True, ranks=(2, 5), shape_attr="num_groups",
               error_kinds=("negative_eps", "groups_not_dividing", "weight_shape"),
               independence_clause="GN-2"),
        OpInfo(name="instance_norm", prefix="IN", clauses=("IN-1", "IN-2", "IN-3"),
               reference=reference.instance_norm, vjp=reference.instance_norm_vjp,
               stateful=True, has_channel_axis=True, centring=True, ranks=(3, 5), shape_attr=None,
               error_kinds=("negative_eps", "weight_shape"), independence_clause="IN-2"),
        OpInfo(name="rms_norm", prefix="RMS", clauses=("RMS-1", "RMS-2", "RMS-3"),
               reference=reference.rms_norm, vjp=reference.rms_norm_vjp,
               stateful=False, has_channel_axis=False, centring=False, ranks=(1, 4), shape_attr="normalized_shape",
               error_kinds=("negative_eps", "normalized_shape_mismatch", "weight_shape"),
               independence_clause="RMS-2", has_bias=False),
    )
}
OP_NAMES = tuple(OPS)

# Clause families that apply to every fitted scaler; a scaler's own family is ScalerInfo.prefix.
SCALER_PREFIXES = ("GEN", "SCALE")


@dataclass(frozen=True, kw_only=True)
class ScalerInfo:
    name: str
    prefix: str  # the scaler's clause family, e.g. "STD"
    clauses: tuple  # the scaler's own clauses
    reference: Callable  # fits the reference on a list of chunks (reference/<name>.py)
    method: str  # the Adapter method that builds the implementation's Scaler
    options: tuple  # the keyword options that method takes (besides device), the spec's names
    statistics: tuple  # what Scaler.statistics() returns, the spec's names
    exact_statistics: tuple  # the statistics SCALE-7.1 requires exactly (MINMAX-2's extremes)
    bounds: Callable  # SCALE-7.2 / SCALE-7.3: (fitted reference, x, input_dtype) -> (output, round trip)
    dtypes: tuple = ("float32", "float64")  # SCALE-1

    @property
    def defining_clause(self) -> str:
        """The scaler's first clause, cited when a call into the implementation fails."""
        return self.clauses[0]


SCALERS = {
    row.name: row
    for row in (
        ScalerInfo(name="standard_scaler", prefix="STD", clauses=("STD-1", "STD-2", "STD-3", "STD-4"),
                   reference=reference.standard_scaler, method="standard_scaler",
                   options=("with_mean", "with_std"), statistics=("mean", "variance", "scale"),
                   exact_statistics=(), bounds=tolerance.standard_scaler_bounds),
        ScalerInfo(name="minmax_scaler", prefix="MINMAX", clauses=("MINMAX-1", "MINMAX-2", "MINMAX-3", "MINMAX-4"),
                   reference=reference.minmax_scaler, method="minmax_scaler",
                   options=("feature_range", "clip"), statistics=("data_min", "data_max", "scale"),
                   exact_statistics=("data_min", "data_max"), bounds=tolerance.minmax_scaler_bounds),
    )
}
SCALER_NAMES = tuple(SCALERS)


@dataclass(frozen=True, kw_only=True)
class DataParallelInfo:
    """An op run across replicas with the engine's collective (spec/ops/sync_batch_norm.md): its
    oracle is the single-device op (`base`) on the concatenated global batch."""

    name: str
    prefix: str  # the op's clause family, e.g. "DP"
    clauses: tuple  # its own clauses
    base: str  # the OPS row it is the data-parallel form of; that row's clauses apply to the global batch
    reference: Callable  # the reference on a list of shards (reference/<name>.py)
    vjp: Callable  # the reference VJP on shards and cotangents (DP-7)
    min_replicas: int = 2
    max_replicas: int = 8  # the replica counts the suite draws, at most the adapter's Capabilities.max_replicas

    @property
    def defining_clause(self) -> str:
        return self.clauses[0]


DATA_PARALLEL = {
    row.name: row
    for row in (
        DataParallelInfo(name="sync_batch_norm", prefix="DP", clauses=("DP-1", "DP-2", "DP-3", "DP-4", "DP-5"),
                         base="batch_norm", reference=reference.sync_batch_norm, vjp=reference.sync_batch_norm_vjp),
    )
}
DATA_PARALLEL_NAMES = tuple(DATA_PARALLEL)
# Every name `--ops`, the expectations filters and the reports accept: the layers, the scalers, the
# data-parallel ops.
ALL_OP_NAMES = OP_NAMES + SCALER_NAMES + DATA_PARALLEL_NAMES
# Every clause family, shared or an op's own: what a clause ID starts with. CLAUSE_ID is the
# pattern of an ID (without anchors), which code, tests and the site search text with.
CLAUSE_PREFIXES = tuple(dict.fromkeys(GENERIC_PREFIXES + SCALER_PREFIXES + tuple(
    row.prefix for table in (OPS, SCALERS, DATA_PARALLEL) for row in table.values())))
CLAUSE_ID = r"(?:" + "|".join(CLAUSE_PREFIXES) + r")-[0-9]+(?:\.[0-9]+)*"

__all__ = ["ALL_OP_NAMES", "CLAUSE_ID", "CLAUSE_PREFIXES", "DATA_PARALLEL", "DATA_PARALLEL_NAMES", "DataParallelInfo", "DEVICES", "DTYPES", "GENERIC_PREFIXES", "HALF_DTYPES", "OPS", "OP_NAMES", "OpInfo",
           "SCALERS", "SCALER_NAMES", "SCALER_PREFIXES", "ScalerInfo", "clauses_for", "slice_ids"]


def clauses_for(op: str | None, cited) -> list:
    """The cited clauses that apply to `op`: the generic ones and the op's own (NUM-1.5, on
    running statistics, only for the ops that keep them; SCALE and GEN for a scaler; a
    data-parallel op's, its base op's and the generic ones for a data-parallel op)."""
    if op is None:
        return list(cited)
    if op in SCALERS:
        return [c for c in cited if c.split("-")[0] in SCALER_PREFIXES + (SCALERS[op].prefix,)]
    if op in DATA_PARALLEL:
        row = DATA_PARALLEL[op]
        return [c for c in cited if c.split("-")[0] in GENERIC_PREFIXES + (OPS[row.base].prefix, row.prefix)]
    row = OPS[op]
    return [c for c in cited if c.split("-")[0] in GENERIC_PREFIXES + (row.prefix,)
            and (c != "NUM-1.5" or row.stateful)]


def slice_ids(op: str, shape: tuple, attrs: dict, channel_axis: int) -> np.ndarray:
    """The slice (NORM steps' unit) each element belongs to, as an int array of `shape`."""
    if not OPS[op].has_channel_axis:
        k = len(attrs["normalized_shape"])
        return np.arange(int(np.prod(shape[:len(shape) - k]))).repeat(int(np.prod(shape[len(shape) - k:]))).reshape(shape)
    axis = channel_axis % len(shape)
    index = np.indices(shape)
    channel = index[axis]
    if op == "batch_norm":
        return channel
    channels = shape[axis]
    if op == "group_norm":
        return index[0] * attrs["num_groups"] + channel // (channels // attrs["num_groups"])
    return index[0] * channels + channel
