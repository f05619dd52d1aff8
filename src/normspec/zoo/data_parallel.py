"""Synchronized BatchNorm in the zoo (spec DP): `MergingSyncKernel` ("zoo-sync-merge"), a correct
implementation written without normspec.reference, and the mutants of it that the suite must kill.

The kernel stands in for R replicas in one NumPy process: each replica reduces its shard to partial
statistics (count, mean, sum of squared deviations by two passes, in the compute dtype of NUM-2.1:
float32 for half inputs), the partials
are merged in replica order by the pairwise update of Chan, Golub and LeVeque (an empty shard, count
0, is left out), every replica normalizes its shard with the merged statistics, and each replica
keeps and updates its own copy of the running statistics (BN-4.1's weighted form, the unbiased
estimator with the global count). It is a model of the arithmetic an engine's collective performs,
for the kill matrix; the adapters of real engines use the engines' own collectives.

Its per-replica VJP (DP-7) is the backward of the same program: the global statistics merged again
from the partials, each replica's local sums of dy and dy x_hat over its shard, those sums all-reduced
(summed over the replicas in order), and each replica's dx from the global sums and the global count,
gamma r (dy - sum(dy) / m - x_hat sum(dy x_hat) / m); each replica's weight and bias gradients are its
local sums, before any cross-replica sum (the caller's data-parallel loop sums or averages them).
"""
from __future__ import annotations

import numpy as np

from normspec.adapters import Capabilities, Conventions, ReplicatedLayer
from normspec.dtypes import MIXED_PRECISION, numpy_dtype

from ._base import Mutant
from .kernel import TwoPassKernel

_SYNC = Capabilities(ops=(), dtypes=("float16", "bfloat16", "float32", "float64"), data_parallel=("sync_batch_norm",),
                     data_parallel_backward=("sync_batch_norm",), mixed_precision=MIXED_PRECISION)


def _channel_rows(shard: np.ndarray) -> np.ndarray:
    """(C, m_r * spatial): each channel's values of one shard, channels at axis 1."""
    return np.moveaxis(shard, 1, 0).reshape(shard.shape[1], -1)


def _from_channel_rows(rows: np.ndarray, shape: tuple) -> np.ndarray:
    """The inverse of _channel_rows for a shard of `shape`."""
    moved = (shape[1], shape[0], *shape[2:])
    return np.moveaxis(rows.reshape(moved), 0, 1)


class ZooSyncLayer(ReplicatedLayer):
    """R replicas' running statistics (one copy each) and the kernel's steps."""

    def __init__(self, kernel, replicas, weight, bias, running_mean, running_var, momentum, eps):
        self.kernel, self.replicas, self.weight, self.bias = kernel, replicas, weight, bias
        self.momentum, self.eps = momentum, eps
        self.state = [(running_mean.copy(), running_var.copy()) for _ in range(replicas)]

    def __call__(self, shards, *, training):
        dtype = shards[0].dtype
        compute = self.kernel.compute_dtype(dtype)
        shards = [s.astype(compute) for s in shards]
        shape = [1] * shards[0].ndim
        shape[1] = -1
        with np.errstate(all="ignore"):
            if training:
                partials = [self.kernel.sent(self.kernel.partial(_channel_rows(s)), dtype) for s in shards]
                merged = self.kernel.combine(partials)
                if merged is None:
                    raise ValueError("DP-1: every shard is empty; the global batch has no values")
                count, mean, m2 = merged
                variance = self.kernel.variance(count, mean, m2)
                if float(count[0]) < 2:
                    raise ValueError("BN-5.2: fewer than 2 values per channel in the global batch")
                self.state = [self.kernel.update(r, self.state[r], partials[r], count, mean, variance, self.momentum)
                              for r in range(self.replicas)]
            else:
                mean, variance = (value.astype(compute) for value in self.state[0])
            inverse = (compute.type(1) / np.sqrt(variance + compute.type(self.eps))).astype(compute)
            outputs = []
            for shard in shards:
                y = (shard - mean.reshape(shape)) * inverse.reshape(shape)
                if self.weight is not None:
                    y = y * self.weight.astype(compute).reshape(shape)
                if self.bias is not None:
                    y = y + self.bias.astype(compute).reshape(shape)
                outputs.append(y.astype(dtype))
        return outputs

    def running_stats(self):
        return [(mean.copy(), var.copy()) for mean, var in self.state]


class MergingSyncKernel(TwoPassKernel):
    """A correct synchronized BatchNorm: two-pass partials per replica merged by Chan, Golub and
    LeVeque in the compute dtype (NUM-2.1), the unbiased estimator with the global count."""

    id = "zoo-sync-merge"
    conventions = Conventions(channel_axis=1, momentum_weights="new_batch", running_var_estimator="unbiased")
    capabilities = _SYNC

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        dtype = numpy_dtype(param_dtype or dtype)  # the running statistics' dtype (NUM-2.3)
        if running_mean is None:  # BN-4.3
            running_mean, running_var = np.zeros(num_features, dtype), np.ones(num_features, dtype)
        if momentum is None:
            raise NotImplementedError("the zoo's synchronized BatchNorm has no cumulative average (BN-4.2)")
        return ZooSyncLayer(self, replicas, weight, bias, running_mean, running_var, momentum, eps)

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device, param_dtype=None):
        """DP-7: the VJP of one training call on len(shards) replicas, in the compute dtype (NUM-2.1), the
        parameter gradients in the parameters' dtype (GRAD-8.2)."""
        dtype = shards[0].dtype
        parameter_dtype = numpy_dtype(param_dtype) if param_dtype else dtype
        compute = self.compute_dtype(dtype)
        rows = [_channel_rows(s.astype(compute)) for s in shards]
        dy_rows = [_channel_rows(np.asarray(c).astype(compute)) for c in cotangents]
        channels = rows[0].shape[0]
        gamma = (np.ones(channels, compute) if weight is None else np.asarray(weight).astype(compute))[:, None]
        with np.errstate(all="ignore"):
            partials = [self.sent(self.partial(r), dtype) for r in rows]
            count, mean, m2 = self.combine(partials)
            if float(count[0]) < 2:
                raise ValueError("BN-5.2: fewer than 2 values per channel in the global batch")
            variance = self.variance(count, mean, m2)
            inverse = (compute.type(1) / np.sqrt(variance + compute.type(eps))).astype(compute)[:, None]
            x_hats = [(r - mean[:, None]) * inverse for r in rows]
            local = [self.backward_partial(dy, x_hat) for dy, x_hat in zip(dy_rows, x_hats)]
            reduced = self.backward_reduce(local)
            dx = [_from_channel_rows(self.input_gradient(dy, x_hat, gamma, inverse, reduced, count[:, None],
                                                         local[r], p[0][:, None]), s.shape).astype(dtype)
                  for r, (dy, x_hat, p, s) in enumerate(zip(dy_rows, x_hats, partials, shards))]
            parameters = [self.replica_parameter_gradients(local[r], reduced) for r in range(len(shards))]
        return {"x": dx,
                "weight": None if weight is None else [dw.astype(parameter_dtype) for dw, _ in parameters],
                "bias": None if bias is None else [db.astype(parameter_dtype) for _, db in parameters]}

    # ------------------------------------------------------------------ the steps mutants override

    def partial(self, rows: np.ndarray) -> tuple:
        """count, mean and sum of squared deviations of each channel's values on one replica."""
        dtype = rows.dtype
        count = np.full(rows.shape[0], rows.shape[1], dtype)
        mean = rows.sum(axis=1) / np.maximum(count, dtype.type(1))
        centred = rows - mean[:, None]
        return count, mean, (centred * centred).sum(axis=1)

    def sent(self, partial: tuple, input_dtype) -> tuple:
        """What a replica's collective carries of its partial statistics: them as computed (NUM-2.1)."""
        return partial

    def combine(self, partials: list) -> tuple:
        """Chan, Golub and LeVeque over the replicas in order: mean_a + delta n_b / n and
        M2_a + M2_b + delta^2 n_a n_b / n; an empty replica is left out."""
        merged = None
        for part in partials:
            if float(part[0][0]) == 0:
                continue
            if merged is None:
                merged = part
                continue
            (na, ma, sa), (nb, mb, sb) = merged, part
            n = na + nb
            delta = mb - ma
            merged = (n, ma + delta * (nb / n), sa + sb + delta * delta * (na * nb / n))
        return merged

    def variance(self, count, mean, m2):
        """The biased variance of the global batch (NORM-3)."""
        return m2 / count

    def estimator_factor(self, count, local_count):
        """BN-4.4's unbiased factor with the global count (DP-2)."""
        return count / (count - count.dtype.type(1))

    def update(self, replica: int, state: tuple, local: tuple, count, mean, variance, momentum) -> tuple:
        """One replica's BN-4.1 update from the global statistics."""
        old_mean, old_var = state
        dtype, compute = old_mean.dtype, mean.dtype  # the state's dtype; the statistics' compute dtype
        alpha = compute.type(momentum)
        estimate = variance * self.estimator_factor(count, local[0])
        return (((1 - alpha) * old_mean.astype(compute) + alpha * mean).astype(dtype),
                ((1 - alpha) * old_var.astype(compute) + alpha * estimate).astype(dtype))

    # The backward (DP-7).

    def backward_partial(self, dy, x_hat) -> tuple:
        """One replica's local sums over its shard of each channel's dy and dy x_hat."""
        return dy.sum(axis=1), (dy * x_hat).sum(axis=1)

    def backward_reduce(self, local: list) -> tuple:
        """The all-reduce of the backward's sums: summed over the replicas, in order."""
        total_dy, total_dy_x_hat = local[0]
        for sum_dy, sum_dy_x_hat in local[1:]:
            total_dy, total_dy_x_hat = total_dy + sum_dy, total_dy_x_hat + sum_dy_x_hat
        return total_dy, total_dy_x_hat

    def input_gradient(self, dy, x_hat, gamma, inverse, sums, count, local, local_count):
        """GRAD-3 on one replica's rows: gamma r (dy - sum(dy) / m - x_hat sum(dy x_hat) / m), from the
        all-reduced sums and the global count (`local`, `local_count`: the replica's own, unused here)."""
        sum_dy, sum_dy_x_hat = sums
        return gamma * inverse * (dy - sum_dy[:, None] / count - x_hat * (sum_dy_x_hat[:, None] / count))

    def replica_parameter_gradients(self, local, reduced) -> tuple:
        """GRAD-2 on one replica: (d gamma, d beta) = (sum dy x_hat, sum dy) over its own shard."""
        sum_dy, sum_dy_x_hat = local
        return sum_dy_x_hat, sum_dy


class SyncMutant(Mutant, MergingSyncKernel):
    """A synchronized BatchNorm mutant: the merging kernel with one bug."""

    base = MergingSyncKernel
    capabilities = _SYNC


class MeanOfReplicaMeans(SyncMutant):
    """Takes the global mean as the unweighted mean of the non-empty replicas' means (flax #2417)."""
    id, violates = "mutant-sync-mean-of-replica-means", "DP-2"
    caught_by = frozenset({"DP-3", "DP-4"})

    def combine(self, partials):
        count, _, m2 = super().combine(partials)
        means = [p[1] for p in partials if float(p[0][0]) > 0]
        return count, sum(means) / count.dtype.type(len(means)), m2


class LocalCountBessel(SyncMutant):
    """Each replica's running variance uses Bessel's correction with its own count m_r / (m_r - 1)."""
    id, violates = "mutant-sync-local-count-bessel", "DP-2"
    caught_by = frozenset({"DP-4"})

    def estimator_factor(self, count, local_count):
        return local_count / (local_count - local_count.dtype.type(1))


class SumsOfSquaresMerge(SyncMutant):
    """Merges per-replica sums of x and of x^2 and takes the variance as mean(x^2) - mean(x)^2."""
    id, violates = "mutant-sync-sums-of-squares-merge", "DP-6"
    caught_by = frozenset({"DP-3", "DP-4"})

    def partial(self, rows):
        count, mean, _ = super().partial(rows)
        return count, rows.sum(axis=1), (rows * rows).sum(axis=1)  # sums, not a mean and deviations

    def combine(self, partials):
        count = sum(p[0] for p in partials)
        total, squares = sum(p[1] for p in partials), sum(p[2] for p in partials)
        return count, total / count, squares

    def variance(self, count, mean, m2):
        return m2 / count - mean * mean


class ReplicasKeepLocalMeans(SyncMutant):
    """Normalizes with the global statistics but updates each replica's running mean from its own
    shard's mean, so the replicas' running statistics drift apart."""
    id, violates = "mutant-sync-replicas-diverge", "DP-4"
    caught_by = frozenset({"DP-4"})

    def update(self, replica, state, local, count, mean, variance, momentum):
        local_mean = np.where(local[0] > 0, local[1], mean)
        return super().update(replica, state, local, count, local_mean, variance, momentum)


class PartialsSentInInputDtype(SyncMutant):
    """Sends each replica's partial statistics (count, mean, sum of squared deviations) in the input
    dtype to halve the collective's traffic: with float16/bfloat16 shards the merge starts from
    half-precision means and sums, which NUM-2.1's float32 accumulation (and DP-6's bound) excludes."""
    id, violates = "mutant-sync-partials-sent-in-input-dtype", "DP-6"
    caught_by = frozenset({"DP-3", "DP-4", "DP-7"})

    def sent(self, partial, input_dtype):
        compute = partial[1].dtype
        return tuple(value.astype(input_dtype).astype(compute) for value in partial)


class RestoreOnReplicaZeroOnly(SyncMutant):
    """Loads a checkpoint's running statistics on replica 0 only (the rank that read the file) and
    leaves the other replicas' fresh state, with no broadcast: the replicas start apart."""
    id, violates = "mutant-sync-restore-on-replica-0-only", "DP-4"
    caught_by = frozenset({"DP-4"})

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        layer = super().sync_batch_norm_layer(replicas=replicas, num_features=num_features, dtype=dtype,
                                              weight=weight, bias=bias, running_mean=None, running_var=None,
                                              momentum=momentum, eps=eps, device=device, param_dtype=param_dtype)
        if running_mean is not None:
            layer.state[0] = (np.array(running_mean), np.array(running_var))
        return layer


# ---------------------------------------------------------------- the backward (DP-7)

class LocalBackwardSums(SyncMutant):
    """The classic SyncBN backward bug: the forward is synchronized, but each replica's dx is the
    single-device BatchNorm backward of its own shard with the global statistics, its local sums of dy
    and dy x_hat over its local count (no all-reduce of the backward's reductions)."""
    id, violates = "mutant-sync-vjp-local-backward-sums", "DP-7"
    caught_by = frozenset({"DP-7"})

    def input_gradient(self, dy, x_hat, gamma, inverse, sums, count, local, local_count):
        return super().input_gradient(dy, x_hat, gamma, inverse, local, local_count, local, local_count)


class ParameterGradientsAllReduced(SyncMutant):
    """All-reduces the weight and bias gradients inside the layer and returns the summed value on every
    replica, so that a caller who sums the replicas' gradients (DP-7) counts them R times."""
    id, violates = "mutant-sync-vjp-parameter-gradients-summed", "DP-7"
    caught_by = frozenset({"DP-7"})

    def replica_parameter_gradients(self, local, reduced):
        return super().replica_parameter_gradients(reduced, reduced)


class BackwardLocalCount(SyncMutant):
    """All-reduces the backward's sums of dy and dy x_hat but divides them by the replica's local count
    m_r instead of the global count m in dx's mean terms."""
    id, violates = "mutant-sync-vjp-local-count", "DP-7"
    caught_by = frozenset({"DP-7"})

    def input_gradient(self, dy, x_hat, gamma, inverse, sums, count, local, local_count):
        return super().input_gradient(dy, x_hat, gamma, inverse, sums, local_count, local, local_count)


SYNC_MUTANTS = (MeanOfReplicaMeans, LocalCountBessel, SumsOfSquaresMerge, ReplicasKeepLocalMeans, LocalBackwardSums,
                ParameterGradientsAllReduced, BackwardLocalCount)
