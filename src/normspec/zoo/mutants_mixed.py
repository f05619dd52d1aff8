"""Mutants of mixed precision (NUM-2.3): kernels right when the parameters share the input's
dtype that lose the float32 parameters' or running statistics' precision when they do not, so
only tests/conformance/test_mixed_precision.py can kill them."""
from __future__ import annotations

import numpy as np

from normspec.dtypes import HALF_DTYPES, MIXED_PRECISION

from ._base import NUMERIC, Mutant, ops


def mixed(*names: str) -> object:
    """The capabilities of a mixed-precision mutant: half inputs only, with float32 parameters too."""
    return ops(*names, dtypes=HALF_DTYPES, mixed_precision=MIXED_PRECISION)


class _RemembersInputDtype(Mutant):
    """Keeps the dtype of the input of the call in progress, which the steps below do not see, and
    whether the call is mixed (only mixed calls get `param_dtype`)."""

    def _remember(self, x, arguments):
        self._input_dtype, self._mixed = x.dtype, arguments.get("param_dtype") is not None

    def layer_norm(self, x, **arguments):
        self._remember(x, arguments)
        return super().layer_norm(x, **arguments)

    def rms_norm(self, x, **arguments):
        self._remember(x, arguments)
        return super().rms_norm(x, **arguments)

    def batch_norm(self, x, **arguments):
        self._remember(x, arguments)
        return super().batch_norm(x, **arguments)


class MixedAffineInHalf(_RemembersInputDtype):
    """RMSNorm as many transformer codebases write it: x_hat rounded to the half input dtype, then
    multiplied there by the float32 weight rounded to it (`weight.to(x.dtype) * x_hat.to(x.dtype)`):
    three roundings at the output's precision instead of one."""
    id, violates = "mutant-mixed-affine-in-half", "NUM-2.3"
    caught_by = NUMERIC | {"NUM-2.3"}
    capabilities = mixed("rms_norm")

    def affine(self, x_hat, weight, bias):
        if not self._mixed:  # with half parameters it is mutant-half-affine's bug, which NUM-2.1 kills
            return super().affine(x_hat, weight, bias)

        def cast(a):
            return None if a is None else a.astype(self._input_dtype)
        return super().affine(cast(x_hat), cast(weight), cast(bias)).astype(x_hat.dtype)


class MixedParametersRoundedToInput(_RemembersInputDtype):
    """LayerNorm that casts its float32 gamma and beta to the input dtype before use
    (`F.layer_norm(x, ..., weight.to(x.dtype), bias.to(x.dtype))`), the affine step itself in float32."""
    id, violates = "mutant-mixed-parameters-rounded-to-input", "NUM-2.3"
    caught_by = NUMERIC | {"NUM-2.3"}
    capabilities = mixed("layer_norm")

    def affine(self, x_hat, weight, bias):
        def rounded(a):
            return None if a is None else a.astype(self._input_dtype).astype(a.dtype)
        return super().affine(x_hat, rounded(weight), rounded(bias))


class MixedLongRowParametersInHalf(_RemembersInputDtype):
    """Mixed-precision LayerNorm whose path for rows of 1024 or more elements takes one dtype for
    everything: the float32 gamma and beta rounded to the input dtype there, right for shorter rows;
    only production shapes with float32 parameters see it."""
    id, violates = "mutant-mixed-long-row-parameters-in-half", "NUM-2.3"
    caught_by = NUMERIC | {"NUM-2.3"}
    capabilities = mixed("layer_norm")
    threshold = 1024

    def affine(self, x_hat, weight, bias):
        given = weight if weight is not None else bias
        if not self._mixed or given is None or given.size < self.threshold:  # the parameters span one row
            return super().affine(x_hat, weight, bias)

        def rounded(a):
            return None if a is None else a.astype(self._input_dtype).astype(a.dtype)
        return super().affine(x_hat, rounded(weight), rounded(bias))


class MixedFrozenStatisticsInHalf(_RemembersInputDtype):
    """Evaluation-mode BatchNorm that reads its float32 running statistics rounded to the input
    dtype (the statistics cast with the activations before the kernel)."""
    id, violates = "mutant-mixed-frozen-statistics-in-half", "NUM-2.3"
    caught_by = NUMERIC | {"NUM-2.3"}
    capabilities = mixed("batch_norm")

    def frozen(self, ncl, mean, variance, eps):
        def rounded(a):
            return a.astype(self._input_dtype).astype(a.dtype)
        return super().frozen(ncl, rounded(mean), rounded(variance), eps)


class MixedRunningStatsStoredInHalf(_RemembersInputDtype):
    """BatchNorm that keeps its running statistics in the activation dtype: each update is rounded to
    the half input dtype, then returned as the float32 it was given (a small momentum's step is lost)."""
    id, violates = "mutant-mixed-running-stats-stored-in-half", "NUM-2.3"
    caught_by = frozenset({"NUM-1.5", "NUM-2.3", "BN-3"})  # BN-3: evaluation rounds the state too
    capabilities = mixed("batch_norm")

    def to_state(self, value, dtype):
        return value.astype(self._input_dtype).astype(dtype)


class MixedRunningStatsReturnedInHalf(_RemembersInputDtype):
    """BatchNorm that returns its float32 running statistics in the activation dtype."""
    id, violates = "mutant-mixed-running-stats-returned-in-half", "NUM-2.2"
    caught_by = frozenset({"NUM-2.2"})
    capabilities = mixed("batch_norm")

    def to_state(self, value, dtype):
        return value.astype(self._input_dtype)
