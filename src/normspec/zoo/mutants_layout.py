"""Mutants of what is normalized over and how the result is scaled: reduction axes,
channel layout, grouping, the affine step and RMSNorm."""
from __future__ import annotations

import numpy as np

from ._base import NUMERIC, SLICES, Mutant, ops


# ---------------------------------------------------------------- reduction axes and layout

class LayerNormLastAxisOnly(Mutant):
    """LayerNorm over the last axis only, even when normalized_shape has two dimensions."""
    id, violates = "mutant-layer-norm-last-axis-only", "LN-2"
    caught_by = SLICES | {"LN-2", "NORM-5"}
    capabilities = ops("layer_norm")

    def layer_rows(self, x, normalized_shape):
        return x.reshape(-1, x.shape[-1])


class BatchNormPerPosition(Mutant):
    """Training BatchNorm statistics over the batch axis only, per channel and position
    (the spatial axes are not reduced); the running statistics are right."""
    id, violates = "mutant-batch-norm-per-position", "BN-2"
    caught_by = SLICES | {"BN-2", "NORM-5"}
    capabilities = ops("batch_norm")

    def batch_statistics(self, ncl, eps):
        _, mean, variance = super().batch_statistics(ncl, eps)
        n, c, length = ncl.shape
        x_hat, _, _ = self.normalize_rows(ncl.transpose(1, 2, 0).reshape(c * length, n), eps)
        return x_hat.reshape(c, length, n).transpose(2, 0, 1), mean, variance


class BatchNormLastAxisAsChannels(Mutant):
    """Training BatchNorm written for channels-last data: the statistics are taken per
    index of the last axis although the layout is channels first (right for rank 2)."""
    id, violates = "mutant-batch-norm-last-axis-as-channels", "BN-2"
    caught_by = SLICES | {"BN-2", "NORM-5"}
    capabilities = ops("batch_norm")

    def batch_norm(self, x, **kwargs):
        self._spatial = x.shape[2:]
        return super().batch_norm(x, **kwargs)

    def batch_statistics(self, ncl, eps):
        _, mean, variance = super().batch_statistics(ncl, eps)
        if not self._spatial:
            return super().batch_statistics(ncl, eps)
        n, c, _ = ncl.shape
        full = ncl.reshape((n, c) + self._spatial)
        last = np.moveaxis(full, -1, 0)
        x_hat, _, _ = self.normalize_rows(last.reshape(last.shape[0], -1), eps)
        return np.moveaxis(x_hat.reshape(last.shape), 0, -1).reshape(ncl.shape), mean, variance


class InstanceNormOverBatch(Mutant):
    """InstanceNorm statistics over the batch and the positions (BatchNorm's slices)."""
    id, violates = "mutant-instance-norm-over-batch", "IN-2"
    caught_by = SLICES | {"IN-2", "NUM-1.5", "NORM-5", "GN-2"}
    capabilities = ops("instance_norm")

    def instance_statistics(self, ncl, eps):
        x_hat, mean, variance = self.batch_statistics(ncl, eps)
        n = ncl.shape[0]
        return x_hat, np.tile(mean, (n, 1)), np.tile(variance, (n, 1))


class GroupNormInterleaved(Mutant):
    """Channel c belongs to group c % G (interleaved) instead of the contiguous block c // (C/G)."""
    id, violates = "mutant-group-norm-interleaved", "GN-2"
    caught_by = SLICES | {"GN-2", "NORM-5"}
    capabilities = ops("group_norm")

    def group_normalize(self, ncl, num_groups, eps):
        n, c, length = ncl.shape
        per_group = c // num_groups
        # (N, C/G, G, L) -> (N, G, C/G, L): channel k*G + g lands in group g
        grouped = ncl.reshape(n, per_group, num_groups, length).transpose(0, 2, 1, 3)
        x_hat = super().group_normalize(grouped.reshape(n, c, length), num_groups, eps)
        return x_hat.reshape(n, num_groups, per_group, length).transpose(0, 2, 1, 3).reshape(n, c, length)


class GroupNormGroupsAsSize(Mutant):
    """num_groups taken as the number of channels per group (C / G groups instead of G)."""
    id, violates = "mutant-group-norm-groups-as-size", "GN-2"
    caught_by = SLICES | {"GN-2", "NORM-5"}
    capabilities = ops("group_norm")

    def group_normalize(self, ncl, num_groups, eps):
        return super().group_normalize(ncl, ncl.shape[1] // num_groups, eps)


class GroupVariancePerChannel(Mutant):
    """GroupNorm centres with the group's mean but scales each channel by its own variance
    about it (the statistics of two different slices mixed)."""
    id, violates = "mutant-group-variance-per-channel", "GN-2"
    caught_by = SLICES | {"GN-2", "NORM-5"}
    capabilities = ops("group_norm")

    def group_normalize(self, ncl, num_groups, eps):
        n, c, length = ncl.shape
        rows = ncl.reshape(n * num_groups, -1)
        centred = (rows - self.row_mean(rows)).reshape(n, c, length)
        return centred * self.inverse_std((centred * centred).mean(axis=2, keepdims=True), eps)


class LayerNormLastTwoAxes(Mutant):
    """LayerNorm over the last two axes only when normalized_shape has three or more
    dimensions (a kernel written for (sequence, hidden) or (height, width) slices)."""
    id, violates = "mutant-layer-norm-last-two-axes", "LN-2"
    caught_by = SLICES | {"LN-2", "NORM-5"}
    capabilities = ops("layer_norm")

    def layer_rows(self, x, normalized_shape):
        if len(normalized_shape) < 3:
            return super().layer_rows(x, normalized_shape)
        return x.reshape(-1, int(np.prod(normalized_shape[-2:])))


class GroupCountCapped(Mutant):
    """GroupNorm with at most 32 groups: num_groups > 32 is computed as 32 groups (when 32
    divides the channels), as a kernel with a fixed table of 32 group slots does."""
    id, violates = "mutant-group-count-capped", "GN-2"
    caught_by = SLICES | {"GN-2", "NORM-5"}
    capabilities = ops("group_norm")
    cap = 32

    def group_normalize(self, ncl, num_groups, eps):
        capped = num_groups > self.cap and ncl.shape[1] % self.cap == 0
        return super().group_normalize(ncl, self.cap if capped else num_groups, eps)


# ---------------------------------------------------------------- the affine step (NORM-6)

class BetaBeforeGamma(Mutant):
    """y = gamma * (x_hat + beta): the bias added before the scale."""
    id, violates = "mutant-beta-before-gamma", "NORM-6"
    caught_by = NUMERIC
    capabilities = ops("layer_norm")

    def affine(self, x_hat, weight, bias):
        y = x_hat if bias is None else x_hat + bias
        return y if weight is None else y * weight


class GammaSquared(Mutant):
    """y = gamma^2 * x_hat + beta (the scale applied twice)."""
    id, violates = "mutant-gamma-squared", "NORM-6"
    caught_by = NUMERIC
    capabilities = ops("instance_norm")

    def affine(self, x_hat, weight, bias):
        return super().affine(x_hat, None if weight is None else weight * weight, bias)


class GammaIgnored(Mutant):
    """y = x_hat + beta: the weight is accepted and ignored."""
    id, violates = "mutant-gamma-ignored", "NORM-6"
    caught_by = NUMERIC
    capabilities = ops("batch_norm")

    def affine(self, x_hat, weight, bias):
        return super().affine(x_hat, None, bias)


class BiasIgnored(Mutant):
    """y = gamma * x_hat: the bias is accepted and ignored."""
    id, violates = "mutant-bias-ignored", "NORM-6"
    caught_by = NUMERIC
    capabilities = ops("group_norm")

    def affine(self, x_hat, weight, bias):
        return super().affine(x_hat, weight, None)


class BiasOnlyWithWeight(Mutant):
    """The bias is applied only inside the weight branch: bias without weight is dropped."""
    id, violates = "mutant-bias-only-with-weight", "NORM-6"
    caught_by = NUMERIC
    capabilities = ops("group_norm", dtypes=("float32",))

    def affine(self, x_hat, weight, bias):
        return x_hat if weight is None else super().affine(x_hat, weight, bias)


class LayerWeightTransposed(Mutant):
    """LayerNorm over two axes applies the weight transposed: right only for a symmetric
    weight, and never caught by a shape check when the two axes are equal."""
    id, violates = "mutant-layer-weight-transposed", "NORM-6"
    caught_by = NUMERIC
    capabilities = ops("layer_norm")

    def layer_norm(self, x, *, weight, **arguments):
        if weight is not None and weight.ndim == 2 and weight.shape[0] == weight.shape[1]:
            weight = np.ascontiguousarray(weight.T)
        return super().layer_norm(x, weight=weight, **arguments)


# ---------------------------------------------------------------- RMSNorm

class RmsCentres(Mutant):
    """RMSNorm subtracts the mean first (LayerNorm without bias)."""
    id, violates = "mutant-rms-centres", "RMS-2"
    caught_by = NUMERIC | {"RMS-2", "RMS-3"}
    capabilities = ops("rms_norm")

    def rms_rows(self, rows, eps):
        return self.normalize_rows(rows, eps)[0]


class RmsEpsOutsideSqrt(Mutant):
    """y = x / (sqrt(q) + eps), which RMS-3 names as non-conforming."""
    id, violates = "mutant-rms-eps-outside-sqrt", "RMS-3"
    caught_by = NUMERIC | {"RMS-3"}
    capabilities = ops("rms_norm")

    def rms_rows(self, rows, eps):
        return rows / (np.sqrt(self.mean_square_rows(rows)) + eps)


class RmsSumNotMean(Mutant):
    """q = sum(x^2): the mean square without the division by n."""
    id, violates = "mutant-rms-sum-not-mean", "RMS-2"
    caught_by = NUMERIC | {"RMS-3"}
    capabilities = ops("rms_norm")

    def mean_square_rows(self, rows):
        return (rows * rows).sum(axis=1, keepdims=True)


class RmsWeightInside(Mutant):
    """The weight applied before the mean square is taken: y = (gamma x) / rms(gamma x)."""
    id, violates = "mutant-rms-weight-inside", "RMS-3"
    caught_by = NUMERIC | {"RMS-3"}
    capabilities = ops("rms_norm")

    def rms_norm(self, x, *, weight, **kwargs):
        scaled = x if weight is None else (x.astype(np.float32) * weight.astype(np.float32)).astype(x.dtype)
        return super().rms_norm(scaled, weight=None, **kwargs)


class RmsSingleElementPassthrough(Mutant):
    """A slice of one element is returned unnormalized (gamma * x): a kernel shortcut for
    n == 1, where x / sqrt(x^2 + eps) is due."""
    id, violates = "mutant-rms-single-element-passthrough", "RMS-3"
    caught_by = NUMERIC | {"RMS-3"}
    capabilities = ops("rms_norm", dtypes=("float32",))

    def rms_rows(self, rows, eps):
        return rows if rows.shape[1] == 1 else super().rms_rows(rows, eps)


class RmsBessel(Mutant):
    """RMSNorm's mean square divided by n - 1 (n > 1): the unbiased estimator's factor where
    no mean was taken."""
    id, violates = "mutant-rms-bessel", "RMS-2"
    caught_by = NUMERIC | {"RMS-2", "RMS-3"}
    capabilities = ops("rms_norm")

    def mean_square_rows(self, rows):
        return (rows * rows).sum(axis=1, keepdims=True) / max(rows.shape[1] - 1, 1)
