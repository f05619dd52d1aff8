"""Mutants of the backward pass (spec/gradients.md): the paths of GRAD-3 and GRAD-4, frozen
statistics (GRAD-5), the parameter sums (GRAD-2), accumulation precision (GRAD-8.1),
completeness and repeatability (GRAD-7), and the error model of GRAD-6 on ill-conditioned
inputs. Each overrides one backward step of the correct kernel (normspec.zoo.correct)
and declares `backward_ops`, so tests/conformance/test_backward.py runs on it."""
from __future__ import annotations

import numpy as np

from normspec.dtypes import HALF_DTYPES, MIXED_PRECISION

from ._base import Mutant, backward
from .mutants_numerics import without_vector_tail

# The clauses a failure of a wrong dx may cite: the differential check
# (test_vjp_matches_reference, GRAD-6.1 with batch or instance statistics) and the law of
# the op's formula (test_input_gradient_projections: GRAD-3, or GRAD-4 for RMSNorm); with
# frozen statistics GRAD-6.2 and test_frozen_gradient_is_elementwise's GRAD-5.
CENTRING = frozenset({"GRAD-6.1", "GRAD-3"})
RMS = frozenset({"GRAD-6.1", "GRAD-4"})
FROZEN = frozenset({"GRAD-6.2", "GRAD-5"})
PARAMETER_GRADIENT = frozenset({"GRAD-6.3", "GRAD-2"})


class _RemembersCall:
    """A mixin of plumbing, not a bug: keeps the input dtype, the op's attributes and whether the call
    is mixed (only mixed calls get `param_dtype`) of the current backward call, for the steps of a
    mutant whose bug depends on them."""

    def vjp(self, op, x, dy, **kwargs):
        self._input_dtype, self._num_groups = x.dtype, kwargs.get("num_groups")
        self._mixed = kwargs.get("param_dtype") is not None
        return super().vjp(op, x, dy, **kwargs)

    def _stored_rows(self, rows):
        """The sum of each row (R, n) -> (R, 1) accumulated in the input dtype, one element at a time."""
        dtype = self._input_dtype
        rows = rows.astype(dtype)
        total = np.zeros((rows.shape[0], 1), dtype)
        for k in range(rows.shape[1]):
            total = (total + rows[:, k:k + 1]).astype(dtype)
        return total


# ---------------------------------------------------------------- the input gradient (GRAD-3, GRAD-4, GRAD-5)

class MissingMeanPath(Mutant):
    """LayerNorm dx without the path through the mean: r (g - x_hat mean(g x_hat)), the
    -r mean(g) term dropped, so dx no longer sums to zero over a slice."""
    id, violates = "mutant-grad-missing-mean-path", "GRAD-3"
    caught_by = CENTRING
    capabilities = backward("layer_norm")

    def gradient_mean(self, g):
        return np.zeros((g.shape[0], 1), g.dtype)


class MissingVariancePath(Mutant):
    """GroupNorm dx without the path through the variance: r (g - mean(g)), the
    -r x_hat mean(g x_hat) term dropped."""
    id, violates = "mutant-grad-missing-variance-path", "GRAD-3"
    caught_by = CENTRING
    capabilities = backward("group_norm")

    def gradient_projection(self, g, centred, rows, mean):
        return np.zeros((g.shape[0], 1), g.dtype)


class TrainingStatisticsAsConstants(Mutant):
    """Training BatchNorm backward that treats the batch mean and variance as constants:
    dx = r g, the frozen formula of GRAD-5, in training."""
    id, violates = "mutant-grad-training-statistics-as-constants", "GRAD-3"
    caught_by = CENTRING
    capabilities = backward("batch_norm")

    def centring_input_gradient(self, g, centred, rows, mean, r):
        return r * g


class EvaluationThroughBatchStatistics(Mutant):
    """Evaluation BatchNorm backward through the training graph: dx by GRAD-3 with the
    batch statistics (and d(gamma) with the batch x_hat), although the forward used the
    running statistics."""
    id, violates = "mutant-grad-evaluation-through-batch-statistics", "GRAD-5"
    caught_by = FROZEN | PARAMETER_GRADIENT
    capabilities = backward("batch_norm")

    def backward_uses_batch_statistics(self, training):
        return True


class RmsNormMeanPath(Mutant):
    """RMSNorm dx with a mean path, as if it centred: r (g - mean(g) - x_hat mean(g x_hat))."""
    id, violates = "mutant-grad-rms-norm-mean-path", "GRAD-4"
    caught_by = RMS
    capabilities = backward("rms_norm")

    def rms_input_gradient(self, g, rows, r):
        return super().rms_input_gradient(g, rows, r) - r * self.gradient_mean(g)


class InputGradientWithoutWeight(Mutant):
    """dx from dy instead of g = gamma dy: the gamma factor of the input gradient is
    missing (the parameter gradients are right), in training and evaluation."""
    id, violates = "mutant-grad-dx-without-weight", "GRAD-1"
    caught_by = CENTRING | FROZEN
    capabilities = backward("batch_norm")

    def scale_cotangent(self, dy, weight):
        return dy


class OnePassBackwardVariance(Mutant):
    """The backward recomputes r from the one-pass variance mean(x^2) - mean(x)^2 (clamped
    at 0), which cancels on inputs with a large common offset; the forward is right."""
    id, violates = "mutant-grad-one-pass-variance", "GRAD-6.1"
    caught_by = CENTRING | PARAMETER_GRADIENT
    capabilities = backward("layer_norm")

    def backward_statistics(self, rows, eps):
        mean = rows.mean(axis=1, keepdims=True)
        variance = np.maximum((rows * rows).mean(axis=1, keepdims=True) - mean * mean, 0)
        return rows - mean, mean, self.inverse_std(variance, eps)


class NormalizedFromHalfOutput(_RemembersCall, Mutant):
    """x_hat of the backward recovered from the forward's half-precision output,
    (y - beta) / gamma: every x_hat rounded to float16/bfloat16 before the variance path and
    d(gamma) use it (the GRAD-8.1 note)."""
    id, violates = "mutant-grad-x-hat-from-half-output", "GRAD-8.1"
    caught_by = CENTRING | PARAMETER_GRADIENT | {"GRAD-8.1"}
    capabilities = backward("group_norm", "instance_norm", dtypes=HALF_DTYPES)

    def backward_statistics(self, rows, eps):
        centred, mean, r = super().backward_statistics(rows, eps)
        x_hat = (centred * r).astype(self._input_dtype).astype(rows.dtype)
        return x_hat / r, mean, r


class HalfPrecisionInputReductions(_RemembersCall, Mutant):
    """mean(g) and mean(g x_hat) of dx accumulated in float16/bfloat16 for half inputs
    (x_hat, r and g themselves in float32)."""
    id, violates = "mutant-grad-half-input-reductions", "GRAD-8.1"
    caught_by = CENTRING | {"GRAD-8.1"}
    capabilities = backward("layer_norm", "group_norm", dtypes=HALF_DTYPES)

    def backward_mean(self, values):
        total = self._stored_rows(values).astype(values.dtype)
        return total / values.dtype.type(values.shape[1])


class BackwardProjectionFirstTile(Mutant):
    """GroupNorm dx whose variance path mean(g (x - mu)) is taken over the first 4096 elements of
    each group only (a backward kernel that loads one tile per group): wrong only for groups
    longer than a tile."""
    id, violates = "mutant-grad-projection-first-tile", "GRAD-3"
    caught_by = CENTRING
    capabilities = backward("group_norm")
    tile = 4096

    def gradient_projection(self, g, centred, rows, mean):
        return self.backward_mean((g * centred)[:, : self.tile])


class BackwardTailDroppedLongRows(Mutant):
    """LayerNorm dx whose row means skip the last n % 8 elements of rows of 1024 or more (a
    vectorized backward path without its tail), dividing by n: seen in float64, where the
    summation error of a 10,007-element row is far below the dropped terms."""
    id, violates = "mutant-grad-tail-dropped-long-rows", "GRAD-3"
    caught_by = CENTRING
    capabilities = backward("layer_norm", dtypes=("float64",))

    def backward_mean(self, values):
        return self.reduce_rows(without_vector_tail(values)) / values.dtype.type(values.shape[1])


# ---------------------------------------------------------------- the parameter gradients (GRAD-2)

class SwappedParameterGradients(Mutant):
    """d(gamma) and d(beta) returned in each other's place (when the layer has both)."""
    id, violates = "mutant-grad-swapped-parameter-gradients", "GRAD-2"
    caught_by = PARAMETER_GRADIENT
    capabilities = backward("layer_norm")

    def parameter_gradients(self, dy, x_hat, x, axes, weight, bias):
        dweight, dbias = super().parameter_gradients(dy, x_hat, x, axes, weight, bias)
        return (dbias, dweight) if dweight is not None and dbias is not None else (dweight, dbias)


class WeightGradientFromInput(Mutant):
    """d(gamma) as the sum of dy x (the raw input) instead of dy x_hat."""
    id, violates = "mutant-grad-weight-gradient-from-input", "GRAD-2"
    caught_by = PARAMETER_GRADIENT
    capabilities = backward("instance_norm")

    def weight_gradient(self, dy, x_hat, x, axes):
        return self.backward_sum(dy * x, axes)


class ParameterGradientsPerGroup(_RemembersCall, Mutant):
    """GroupNorm d(gamma) and d(beta) summed over the group's slice (every channel of the
    group, with the batch and positions) and given to each channel of the group: the sums
    run over the normalization axes instead of all axes but the channel."""
    id, violates = "mutant-grad-parameter-sums-per-group", "GRAD-2"
    caught_by = PARAMETER_GRADIENT
    capabilities = backward("group_norm")

    def backward_sum(self, values, axes):
        total = super().backward_sum(values, axes)
        if self._num_groups is None or total.shape[1] == self._num_groups:
            return total
        channels = total.shape[1]
        per_group = total.reshape(1, self._num_groups, channels // self._num_groups, 1).sum(axis=2, keepdims=True)
        return np.broadcast_to(per_group, (1, self._num_groups, channels // self._num_groups, 1)).reshape(total.shape)


class HalfPrecisionParameterSums(_RemembersCall, Mutant):
    """d(beta) and d(gamma) accumulated in float16/bfloat16 for half inputs: a running sum
    in the input dtype, rounded at every addition."""
    id, violates = "mutant-grad-half-parameter-sums", "GRAD-8.1"
    caught_by = PARAMETER_GRADIENT | {"GRAD-8.1"}
    capabilities = backward("layer_norm", "batch_norm", dtypes=HALF_DTYPES)

    def bias_gradient(self, dy, axes):
        return self.backward_sum(dy, axes, reduce=self._stored_rows).astype(dy.dtype)

    def weight_gradient(self, dy, x_hat, x, axes):
        return self.backward_sum(dy * x_hat, axes, reduce=self._stored_rows).astype(dy.dtype)


class ParameterGradientsChannelGrid(Mutant):
    """BatchNorm dgamma and dbeta computed for the first 256 channels only, 0 past them (a
    reduction launched over a fixed grid)."""
    id, violates = "mutant-grad-parameter-gradients-channel-grid", "GRAD-2"
    caught_by = PARAMETER_GRADIENT
    capabilities = backward("batch_norm")
    grid = 256

    def parameter_gradients(self, dy, x_hat, x, axes, weight, bias):
        gradients = super().parameter_gradients(dy, x_hat, x, axes, weight, bias)
        for gradient in gradients:
            if gradient is not None and gradient.ndim == 3:  # (1, C, 1): one per channel
                gradient[:, self.grid:] = 0
        return gradients


class MixedLongRowParameterSumsInHalf(_RemembersCall, Mutant):
    """Mixed-precision LayerNorm whose path for rows of 1024 or more sums dgamma and dbeta over
    the rows in the half input dtype, then returns them in float32 (only production rows
    with float32 parameters see it)."""
    id, violates = "mutant-grad-mixed-long-row-parameter-sums-in-half", "GRAD-8.1"
    caught_by = PARAMETER_GRADIENT
    capabilities = backward("layer_norm", dtypes=HALF_DTYPES, mixed_precision=MIXED_PRECISION)
    threshold = 1024

    def backward_sum(self, values, axes, reduce=None):
        if self._mixed and values.ndim == 2 and axes == (0,) and values.shape[1] >= self.threshold:
            return np.add.reduce(values.astype(self._input_dtype), axis=0, keepdims=True).astype(values.dtype)
        return super().backward_sum(values, axes, reduce)


# ---------------------------------------------------------------- completeness and repeatability (GRAD-7)

class GradientForAbsentBias(Mutant):
    """A zero d(beta) returned for a layer without a bias (the kernel always allocates both)."""
    id, violates = "mutant-grad-absent-bias-gradient", "GRAD-7.2"
    caught_by = frozenset({"GRAD-7.2"})
    capabilities = backward("group_norm")

    def parameter_gradients(self, dy, x_hat, x, axes, weight, bias):
        dweight, dbias = super().parameter_gradients(dy, x_hat, x, axes, weight, bias)
        return dweight, np.zeros_like(self.bias_gradient(dy, axes)) if dbias is None else dbias


class MissingBiasGradient(Mutant):
    """LayerNorm backward written from an RMSNorm kernel: it never returns d(beta), even for a
    layer with a bias."""
    id, violates = "mutant-grad-missing-bias-gradient", "GRAD-7.2"
    caught_by = frozenset({"GRAD-7.2"})
    capabilities = backward("layer_norm")

    def parameter_gradients(self, dy, x_hat, x, axes, weight, bias):
        dweight, _ = super().parameter_gradients(dy, x_hat, x, axes, weight, bias)
        return dweight, None


class RandomOrderReductions(Mutant):
    """Every backward reduction sums its terms in a random order, new at each call (like
    floating-point atomic additions in thread-scheduling order): within GRAD-6, but two
    identical calls need not agree bit for bit."""
    id, violates = "mutant-grad-non-repeatable", "GRAD-7.1"
    caught_by = frozenset({"GRAD-7.1"})
    capabilities = backward("layer_norm")

    def reduce_rows(self, rows):
        order = np.random.default_rng().permutation(rows.shape[1])
        return super().reduce_rows(rows[:, order])


class DxInCotangentBuffer(Mutant):
    """A memory-saving backward: dx is formed in the buffer of dy (the cotangent), which the
    caller still holds; the gradients themselves are right."""
    id, violates = "mutant-grad-dx-in-cotangent-buffer", "GEN-6"
    caught_by = frozenset({"GEN-6"})
    capabilities = backward("group_norm")

    def vjp(self, op, x, dy, **arguments):
        gradients = super().vjp(op, x, dy, **arguments)
        dy[...] = gradients["x"]
        return dict(gradients, x=dy)
