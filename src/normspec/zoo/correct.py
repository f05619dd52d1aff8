"""The correct implementations of the false-alarm sweep, each written independently of
normspec.reference: the zoo's two-pass kernel (normspec.zoo.kernel) and variants built
differently from it.

`KahanKernel` ("zoo-kahan"): sequential compensated sums over shifted data, channels-last
layout, the "old_value" momentum convention and the biased running-variance estimator (and
compensated sums in its backward), so the sweep also exercises the suite's translation of
conventions (normspec.conventions). `WelfordKernel` ("zoo-welford") replaces its sums by
Welford's updating algorithm, the way GPU kernels compute statistics. `FusedKernel`
("zoo-fused") sums x and x^2 in one pass in float64 and folds x_hat into x r - mean r, as
fused kernels do. `LerpUpdateKernel` ("zoo-lerp-update") is the
two-pass kernel with the running update in the increment form s + alpha (b - s), which
BN-4.1 admits since spec 0.5.0. `StreamingScalerKernel` ("zoo-streaming-scaler", in
normspec.zoo.scalers) fits the scalers chunk by chunk in the data's dtype. `MergingSyncKernel`
("zoo-sync-merge", in normspec.zoo.data_parallel) merges replicas' partial statistics for
synchronized BatchNorm. `CORRECT` lists these seven.

`PlainTwoPassKernel` is correct by the spec's own notes and was once flagged by the suite,
a defect of the spec's error model since fixed (docs/zoo.md); it stays as the
reproduction of that finding.
"""
from __future__ import annotations

import numpy as np

from normspec.adapters import OP_NAMES, Capabilities, Conventions
from normspec.dtypes import MIXED_PRECISION

from .kernel import TwoPassKernel, out_of_range_nan


class KahanKernel(TwoPassKernel):
    """A correct implementation with sequential, compensated (Kahan) sums over data shifted
    by each row's first element, channels last, old-value momentum and the biased
    running-variance estimator (like Keras and Flax). The mean square of RMSNorm is a
    plain sequential sum: without centring there is no cancellation to compensate."""

    id = "zoo-kahan"
    conventions = Conventions(channel_axis=-1, momentum_weights="old_value", running_var_estimator="biased",
                              default_eps={op: 1e-5 for op in OP_NAMES})
    capabilities = Capabilities(cumulative_average=False, instance_norm_running_stats=True, backward_ops=OP_NAMES,
                                mixed_precision=MIXED_PRECISION)

    @staticmethod
    def _kahan_sum(values):
        """Each row's sum, one element at a time with a compensation term (Kahan 1965)."""
        total = np.zeros((values.shape[0], 1), values.dtype)
        compensation = np.zeros_like(total)
        for k in range(values.shape[1]):
            term = values[:, k:k + 1] - compensation
            new_total = total + term
            compensation = (new_total - total) - term
            total = new_total
        return total

    def row_mean(self, rows):
        shift = rows[:, :1]
        return shift + self._kahan_sum(rows - shift) / rows.dtype.type(rows.shape[1])

    def row_variance(self, rows, mean):
        centred = rows - mean
        return self._kahan_sum(centred * centred) / rows.dtype.type(rows.shape[1])

    def reduce_rows(self, rows):
        """The backward's reductions as compensated sequential sums too."""
        return self._kahan_sum(rows)

    def mean_square_rows(self, rows):
        total = np.zeros((rows.shape[0], 1), rows.dtype)
        for k in range(rows.shape[1]):
            total = total + rows[:, k:k + 1] * rows[:, k:k + 1]
        return total / rows.dtype.type(rows.shape[1])


class PlainTwoPassKernel(TwoPassKernel):
    """TwoPassKernel with the plain one-part float32 mean: the textbook two-pass algorithm.

    Kept as a regression case: on a constant float32 BatchNorm slice its computed mean is
    off by an ulp, so the two-pass variance is the mean's error squared instead of 0, which
    NUM-1.5's delta_mu^2 term admits (docs/zoo.md has the history). Check with
        python -m normspec.zoo false-alarms --implementations zoo-plain-twopass --profile dev
    """

    id = "zoo-plain-twopass"

    def row_mean(self, rows):
        return rows.mean(axis=1, keepdims=True)


class WelfordKernel(KahanKernel):
    """Welford's updating algorithm (channels last, old-value momentum, biased estimator),
    which the note of NUM-1.1 admits: its running mean divides at every element and rounds,
    unlike statistics formed as sums divided by n. The cases that once flagged it are in
    tests/false_alarms (docs/zoo.md has the history).
    """

    id = "zoo-welford"

    @staticmethod
    def _welford(rows):
        """(mean, population variance) of each row, one element at a time (Welford 1962)."""
        mean = np.zeros((rows.shape[0], 1), rows.dtype)
        m2 = np.zeros((rows.shape[0], 1), rows.dtype)
        for k in range(rows.shape[1]):
            value = rows[:, k:k + 1]
            delta = value - mean
            mean = mean + delta / rows.dtype.type(k + 1)
            m2 = m2 + delta * (value - mean)
        return mean, m2 / rows.dtype.type(rows.shape[1])

    def normalize_rows(self, rows, eps):
        mean, variance = self._welford(rows)
        x_hat = out_of_range_nan((rows - mean) / np.sqrt(variance + rows.dtype.type(eps)), variance)  # NUM-1.3
        return x_hat, mean, variance

    def mean_square_rows(self, rows):
        q = np.zeros((rows.shape[0], 1), rows.dtype)
        for k in range(rows.shape[1]):
            value = rows[:, k:k + 1]
            q = q + (value * value - q) / rows.dtype.type(k + 1)
        return q


class FusedKernel(TwoPassKernel):
    """A fused kernel's numerics: one pass of sums of x and x^2 accumulated in float64 for
    float16, bfloat16 and float32 inputs (the variance mean(x^2) - mean^2, clamped at 0,
    cancels only float64's roundings), and x_hat folded into x * r - mean * r, the form of
    fused and evaluation-mode kernels (the note of NUM-1.1 admits it). float64 inputs have
    no wider format to sum in and take the two-pass steps, as such a kernel would."""

    id = "zoo-fused"

    @staticmethod
    def _wide_means(rows):
        """mean(x) and mean(x^2) of each row, summed in float64."""
        wide = rows.astype(np.float64)
        return wide.mean(axis=1, keepdims=True), (wide * wide).mean(axis=1, keepdims=True)

    def row_mean(self, rows):
        if rows.dtype == np.float64:
            return super().row_mean(rows)
        return self._wide_means(rows)[0].astype(rows.dtype)

    def row_variance(self, rows, mean):
        if rows.dtype == np.float64:
            return super().row_variance(rows, mean)
        wide_mean, wide_square = self._wide_means(rows)
        return np.maximum(wide_square - wide_mean * wide_mean, 0).astype(rows.dtype)

    def mean_square_rows(self, rows):
        if rows.dtype == np.float64:
            return super().mean_square_rows(rows)
        return self._wide_means(rows)[1].astype(rows.dtype)

    def normalize_rows(self, rows, eps):
        mean = self.row_mean(rows)
        variance = self.row_variance(rows, mean)
        r = self.inverse_std(variance, eps)
        return out_of_range_nan(rows * r - mean * r, variance), mean, variance  # NUM-1.3


class LerpUpdateKernel(TwoPassKernel):
    """The two-pass kernel with the running update in the increment form of BN-4.1,
    s + alpha (b - s): the form of TensorFlow's `assign_moving_average` (which casts its
    weight to the variable's dtype and subtracts (s - b) alpha) and of many EMA kernels.
    Its roundings differ from those of the weighted form: where |s| >> |b| and alpha is
    near 1 it is an ulp of |s| off, and an infinite old statistic gives
    Inf + alpha (b - Inf) = NaN (NUM-1.5 and NUM-4.3 admit both since spec 0.5.0).
    """

    id = "zoo-lerp-update"

    def update(self, running, batch_statistic, alpha):
        weight = running.dtype.type(alpha)  # the weight rounded to the compute dtype, as TF casts it
        return running + weight * (batch_statistic - running)


from .scalers import StreamingScalerKernel  # noqa: E402  (after the kernels above, as the module reads)
from .data_parallel import MergingSyncKernel  # noqa: E402

CORRECT = (TwoPassKernel, KahanKernel, WelfordKernel, FusedKernel, LerpUpdateKernel, StreamingScalerKernel,
           MergingSyncKernel)
