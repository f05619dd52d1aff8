"""Mutants of the state: training against evaluation, running statistics, momentum and
the single-value channel."""
from __future__ import annotations

import numpy as np

from normspec.adapters import Layer
from normspec.dtypes import numpy_dtype

from ._base import NUMERIC, Mutant, ops


# ---------------------------------------------------------------- training and evaluation

class EvalUsesBatchStats(Mutant):
    """Evaluation normalizes with the batch statistics (as if training), without updating."""
    id, violates = "mutant-eval-uses-batch-stats", "BN-3"
    caught_by = NUMERIC | {"BN-3"}
    capabilities = ops("batch_norm")

    def uses_batch_statistics(self, training):
        return True


class TrainUsesRunningStats(Mutant):
    """Training normalizes with the running statistics (then updates them)."""
    id, violates = "mutant-train-uses-running-stats", "BN-2"
    caught_by = NUMERIC | {"BN-2"}
    capabilities = ops("batch_norm")

    def uses_batch_statistics(self, training):
        return False


class EvalUpdatesRunningStats(Mutant):
    """Evaluation updates the running statistics as training does (its output is right)."""
    id, violates = "mutant-eval-updates-running-stats", "BN-3"
    caught_by = frozenset({"BN-3"})
    capabilities = ops("batch_norm")

    def updates_running_statistics(self, training):
        return True


class InstanceEvalUsesInstanceStats(Mutant):
    """InstanceNorm with tracked running statistics still normalizes with the instance
    statistics in evaluation."""
    id, violates = "mutant-instance-eval-uses-instance-stats", "IN-3"
    caught_by = NUMERIC | {"IN-3"}
    capabilities = ops("instance_norm")

    def instance_frozen(self, ncl, mean, variance, eps):
        return self.instance_statistics(ncl, eps)[0]


class ChannelBlockStatistics(Mutant):
    """Evaluation-mode BatchNorm reads the running statistics in blocks of 64 channels with a
    wrong block offset: channel c >= 64 is normalized with channel c - 64's running mean and
    variance (training is right)."""
    id, violates = "mutant-channel-block-statistics", "BN-3"
    caught_by = NUMERIC | {"BN-3"}
    capabilities = ops("batch_norm")
    block = 64

    def frozen(self, ncl, mean, variance, eps):
        index = np.arange(ncl.shape[1])
        index = np.where(index >= self.block, index - self.block, index)
        return super().frozen(ncl, mean[index], variance[index], eps)


# ---------------------------------------------------------------- running statistics

class MomentumSideSwapped(Mutant):
    """running <- alpha * running + (1 - alpha) * batch: the new-batch weight applied to the
    old value (a Keras-style momentum read as PyTorch's, or the reverse)."""
    id, violates = "mutant-momentum-side-swapped", "BN-4.1"
    caught_by = frozenset({"NUM-1.5", "BN-4.1", "BN-4.2"})
    capabilities = ops("batch_norm")

    def update(self, running, batch_statistic, alpha):
        return super().update(running, batch_statistic, 1 - alpha)


class RunningUpdateChannelGrid(Mutant):
    """BatchNorm's running update launched over a fixed grid of 256 channels: channels past
    256 keep their old running statistics."""
    id, violates = "mutant-running-update-channel-grid", "BN-4.1"
    caught_by = frozenset({"NUM-1.5", "BN-4.1"})
    capabilities = ops("batch_norm")
    grid = 256

    def update(self, running, batch_statistic, alpha):
        updated = super().update(running, batch_statistic, alpha)
        return np.where(np.arange(running.shape[0]) < self.grid, updated, running)


class MomentumIgnored(Mutant):
    """The running update always uses the default new-batch weight 0.1."""
    id, violates = "mutant-momentum-ignored", "BN-4.1"
    caught_by = frozenset({"NUM-1.5", "BN-4.1", "BN-4.2"})
    capabilities = ops("batch_norm")

    def alpha(self, momentum, num_batches_tracked):
        return 0.1


class MomentumZeroMeansDefault(Mutant):
    """momentum = momentum or 0.1: a new-batch weight of 0 (frozen statistics, valid by
    ERR-1.6) is falsy and replaced by the default."""
    id, violates = "mutant-momentum-zero-means-default", "BN-4.1"
    caught_by = frozenset({"NUM-1.5", "BN-4.1"})
    capabilities = ops("batch_norm", dtypes=("float32",))

    def alpha(self, momentum, num_batches_tracked):
        return super().alpha(None if momentum is None else momentum or 0.1, num_batches_tracked)


class BiasedRunningVariance(Mutant):
    """Feeds the biased batch variance to the running update although the declared profile
    is unbiased (the estimators of BN-4.4 swapped)."""
    id, violates = "mutant-biased-running-variance", "BN-4.4"
    caught_by = frozenset({"NUM-1.5", "BN-4.4", "BN-4.2"})
    capabilities = ops("batch_norm")

    def fed_variance(self, variance, m):
        return variance


class RunningVarianceWithEps(Mutant):
    """The running update is fed var + eps, the regularized variance the forward divides by."""
    id, violates = "mutant-running-variance-with-eps", "BN-4.4"
    caught_by = frozenset({"NUM-1.5", "BN-4.4", "BN-4.2"})
    capabilities = ops("batch_norm")

    def batch_statistics(self, ncl, eps):
        x_hat, mean, variance = super().batch_statistics(ncl, eps)
        return x_hat, mean, variance + eps


class CumulativeOffByOne(Mutant):
    """Cumulative average (momentum None) with alpha = 1 / (k + 2) instead of 1 / (k + 1)."""
    id, violates = "mutant-cumulative-off-by-one", "BN-4.2"
    caught_by = frozenset({"BN-4.2"})
    capabilities = ops("batch_norm")

    def alpha(self, momentum, num_batches_tracked):
        return super().alpha(momentum, num_batches_tracked + (momentum is None))


class InitialVarianceZero(Mutant):
    """A fresh layer starts with running variance 0 (zero-initialized buffers)."""
    id, violates = "mutant-initial-variance-zero", "BN-4.3"
    caught_by = frozenset({"BN-4.3"})
    capabilities = ops("batch_norm")

    def batch_norm_layer(self, *, dtype, running_mean, running_var, num_features, **kwargs):
        if running_mean is None:
            state = numpy_dtype(dtype)
            running_mean, running_var = np.zeros(num_features, state), np.zeros(num_features, state)
        return super().batch_norm_layer(dtype=dtype, running_mean=running_mean, running_var=running_var,
                                        num_features=num_features, **kwargs)


class _EveryCallCounted(Layer):
    """A layer whose step count grows on every call, evaluation included."""

    def __init__(self, adapter, mean, var, options):
        self.adapter, self.mean, self.var, self.options, self.calls = adapter, mean, var, options, 0

    def __call__(self, x, *, training):
        output, self.mean, self.var = self.adapter.batch_norm(
            x, running_mean=self.mean, running_var=self.var, training=training,
            num_batches_tracked=self.calls, **self.options)
        self.calls += 1
        return output

    def running_stats(self):
        return self.mean, self.var


class CumulativeCountsEvaluation(Mutant):
    """The step count of the cumulative average also counts evaluation calls: wrong only for
    momentum None with an evaluation step before a training step."""
    id, violates = "mutant-cumulative-counts-evaluation", "BN-4.2"
    caught_by = frozenset({"BN-4.2"})
    capabilities = ops("batch_norm")

    def batch_norm_layer(self, *, num_features, dtype, running_mean, running_var, **options):
        if running_mean is None:
            state = numpy_dtype(dtype)
            running_mean, running_var = np.zeros(num_features, state), np.ones(num_features, state)
        return _EveryCallCounted(self, running_mean, running_var, options)


class InstanceRunningSum(Mutant):
    """InstanceNorm's running update feeds the sum over the samples of the instance
    statistics instead of their mean (right only for a batch of one)."""
    id, violates = "mutant-instance-running-sum", "IN-3"
    caught_by = frozenset({"NUM-1.5", "IN-3"})
    capabilities = ops("instance_norm")

    def instance_average(self, per_instance):
        return per_instance.sum(axis=0)


class InstanceUnbiasedOverBatch(Mutant):
    """InstanceNorm's running variance made unbiased with the batch's count N*L instead of
    each instance's L (BatchNorm's m leaking into IN-3)."""
    id, violates = "mutant-instance-unbiased-over-batch", "IN-3"
    caught_by = frozenset({"NUM-1.5", "IN-3"})
    capabilities = ops("instance_norm")

    def instance_norm(self, x, **arguments):
        self._batch = x.shape[0]
        return super().instance_norm(x, **arguments)

    def fed_variance(self, variance, m):
        return super().fed_variance(variance, m * self._batch)


class SingleValueSubstitutesBiased(Mutant):
    """Training on one value per channel under the unbiased profile substitutes the biased
    variance (0) instead of raising the error BN-5.2 requires."""
    id, violates = "mutant-single-value-substitutes-biased", "BN-5.2"
    caught_by = frozenset({"BN-5.2"})
    capabilities = ops("batch_norm")

    def fed_variance(self, variance, m):
        return variance if m < 2 else super().fed_variance(variance, m)
