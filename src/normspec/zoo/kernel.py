"""The NumPy kernel in named steps that the zoo is built on: `TwoPassKernel` (id
"zoo-twopass") is a correct implementation of the five ops, forward and backward, and
every mutant (normspec.zoo.mutants_*) is a small subclass that overrides one step or sets
one switch.

It is the kind of NumPy kernel a framework ships: it computes in float32 for
float16/bfloat16/float32 inputs and in float64 for float64 inputs, takes the mean (in two
parts: the plain mean corrected by the mean of the residuals) and then the two-pass
variance mean((x - mean)^2), normalizes with 1/sqrt(var + eps) and rounds once to the
input dtype; float32 parameters and running statistics with half inputs (mixed precision,
NUM-2.3) are used in float32 and the statistics returned in their own dtype. Its backward recomputes the statistics with the forward's steps, forms
g = gamma dy, and takes dx in the fused form of GRAD-3's note (mean(g) and
mean(g (x - mu)) in one pass over the cotangent; GRAD-4 for RMSNorm, GRAD-5 with frozen
statistics) and the GRAD-2 sums, all in the compute dtype (float32 for half inputs,
GRAD-8.1), rounded once to each gradient's dtype.

It does not import normspec.reference: it is checked against it, not built from it.
"""
from __future__ import annotations

import numpy as np

from normspec.dtypes import MIXED_PRECISION, numpy_dtype
from normspec.adapters import OP_NAMES, Capabilities, Conventions, FunctionalAdapter


def _quiet(method):
    """NaN and Inf are inputs like any other here (NUM-4): no floating-point warnings."""
    def wrapper(self, *args, **kwargs):
        with np.errstate(all="ignore"):
            return method(self, *args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


def _is(dtype, name: str) -> bool:
    return np.dtype(dtype) == numpy_dtype(name)


def out_of_range_nan(x_hat, second_moment):
    """NUM-1.3: a slice whose squares overflowed the compute precision (a variance or mean square of
    +Inf from finite inputs) gives NaN, not the beta that r = 0 would."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isposinf(second_moment), np.nan, x_hat)


class TwoPassKernel(FunctionalAdapter):
    """A correct float32/float64 two-pass NumPy implementation of all five ops."""

    id = "zoo-twopass"
    framework = "numpy"
    # Channels first, new-batch momentum, unbiased running variance: Conventions' defaults.
    conventions = Conventions(default_eps=dict.fromkeys(OP_NAMES, 1e-5))
    capabilities = Capabilities(cumulative_average=True, instance_norm_running_stats=True, backward_ops=OP_NAMES,
                                mixed_precision=MIXED_PRECISION)

    # ------------------------------------------------------------------ the steps
    # Mutants override these. `rows` is a 2-D array (slices, n) in the compute dtype.

    def compute_dtype(self, dtype) -> np.dtype:
        """NUM-2.1: float32 for half and float32 inputs, float64 for float64."""
        return np.dtype(np.float64) if _is(dtype, "float64") else np.dtype(np.float32)

    def row_mean(self, rows):
        """NORM-1 as a two-part mean: the plain mean, corrected by the mean of the residuals.
        Exact for a constant row (the plain float32 mean of n copies of c need not be c)."""
        first = rows.mean(axis=1, keepdims=True)
        return first + (rows - first).mean(axis=1, keepdims=True)

    def row_variance(self, rows, mean):
        """The population variance of each row, two-pass."""
        centred = rows - mean
        return (centred * centred).mean(axis=1, keepdims=True)

    def inverse_std(self, variance, eps):
        return 1 / np.sqrt(variance + eps)

    def normalize_rows(self, rows, eps):
        """NORM-1 .. NORM-5 for every row: (x_hat, mean, population variance)."""
        mean = self.row_mean(rows)
        variance = self.row_variance(rows, mean)
        return out_of_range_nan((rows - mean) * self.inverse_std(variance, eps), variance), mean, variance

    def mean_square_rows(self, rows):
        return (rows * rows).mean(axis=1, keepdims=True)

    def rms_rows(self, rows, eps):
        """RMS-2, RMS-3 without the affine step."""
        mean_square = self.mean_square_rows(rows)
        return out_of_range_nan(rows * self.inverse_std(mean_square, eps), mean_square)

    def affine(self, x_hat, weight, bias):
        """NORM-6; weight and bias are already shaped to broadcast (or None)."""
        y = x_hat if weight is None else x_hat * weight
        return y if bias is None else y + bias

    def to_output(self, y, dtype):
        """NUM-2.2: one rounding to the input dtype."""
        return y.astype(dtype)

    def to_state(self, value, dtype):
        """NUM-2.2: running statistics in their own dtype."""
        return value.astype(dtype)

    def alpha(self, momentum, num_batches_tracked):
        """BN-4.1 / BN-4.2: the new-batch weight of this update."""
        if momentum is None:
            return 1.0 / (num_batches_tracked + 1)
        return momentum if self.conventions.momentum_weights == "new_batch" else 1.0 - momentum

    def update(self, running, batch_statistic, alpha):
        """BN-4.1."""
        return (1 - alpha) * running + alpha * batch_statistic

    def fed_variance(self, variance, m):
        """BN-4.4 under this adapter's declared estimator."""
        if self.conventions.running_var_estimator == "biased":
            return variance
        if m < 2:
            raise ValueError("BN-5.2: the unbiased running variance needs more than one value per channel")
        return variance * (m / (m - 1))

    # ------------------------------------------------------------------ checks (ERR-1)

    @staticmethod
    def _check_input(x, ranks=None):
        """ERR-1.1 (a dtype of GEN-2), ERR-1.7 (the op's ranks) and ERR-1.9 (no empty slice, some slice)."""
        if not any(_is(x.dtype, name) for name in ("float16", "bfloat16", "float32", "float64")):
            raise ValueError(f"x has dtype {x.dtype}, not one of float16, bfloat16, float32, float64")
        if ranks is not None and not ranks[0] <= x.ndim <= ranks[1]:
            raise ValueError(f"x has rank {x.ndim}, outside {ranks[0]} to {ranks[1]}")
        if x.size == 0:
            raise ValueError(f"x of shape {x.shape} has an empty slice or no slices")

    @staticmethod
    def _check_eps(eps):
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"eps={eps!r} must be a finite value >= 0")

    def _check_momentum(self, momentum, allow_none: bool):
        if momentum is None and allow_none:
            return
        if momentum is None or not 0 <= momentum <= 1:
            raise ValueError(f"momentum={momentum!r} must lie in [0, 1]")

    @staticmethod
    def _param(value, shape, name, compute):
        if value is None:
            return None
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{name} has shape {value.shape}, expected {tuple(shape)}")
        return value.astype(compute)

    # ------------------------------------------------------------------ layouts

    def _ncl(self, x):
        """x in the declared channel layout -> (N, C, L) and the shape to map back."""
        axis = self.conventions.channel_axis % x.ndim
        moved = np.moveaxis(x, axis, 1)
        return moved.reshape(moved.shape[0], moved.shape[1], -1), moved.shape

    def _from_ncl(self, y, moved_shape, ndim):
        return np.moveaxis(y.reshape(moved_shape), 1, self.conventions.channel_axis % ndim)

    def _channel_params(self, weight, bias, channels, compute):
        weight = self._param(weight, (channels,), "weight", compute)
        bias = self._param(bias, (channels,), "bias", compute)
        return (None if weight is None else weight.reshape(1, channels, 1),
                None if bias is None else bias.reshape(1, channels, 1))

    # ------------------------------------------------------------------ ops

    @_quiet
    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
        self._check_input(x)
        shape = self._normalized_shape(x, normalized_shape)
        self._check_eps(eps)
        compute = self.compute_dtype(x.dtype)
        x_hat, _, _ = self.normalize_rows(self.layer_rows(x.astype(compute), shape), eps)
        # weight and bias have shape normalized_shape: they broadcast against the trailing axes
        y = self.affine(x_hat.reshape(x.shape), self._param(weight, shape, "weight", compute),
                        self._param(bias, shape, "bias", compute))
        return self.to_output(y, x.dtype)

    @staticmethod
    def _normalized_shape(x, normalized_shape) -> tuple:
        shape = tuple(np.atleast_1d(normalized_shape))
        if not 1 <= len(shape) <= x.ndim or x.shape[x.ndim - len(shape):] != shape:
            raise ValueError(f"normalized_shape {shape} is not the trailing dimensions of {x.shape}")
        return shape

    def layer_rows(self, x, normalized_shape):
        """LN-2: one row per leading index."""
        return x.reshape(-1, int(np.prod(normalized_shape)))

    @_quiet
    def rms_norm(self, x, *, normalized_shape, weight, eps, device, param_dtype=None):
        self._check_input(x)
        shape = self._normalized_shape(x, normalized_shape)
        self._check_eps(eps)
        compute = self.compute_dtype(x.dtype)
        x_hat = self.rms_rows(self.layer_rows(x.astype(compute), shape), eps)
        y = self.affine(x_hat.reshape(x.shape), self._param(weight, shape, "weight", compute), None)
        return self.to_output(y, x.dtype)

    @_quiet
    def group_norm(self, x, *, num_groups, weight, bias, eps, device, param_dtype=None):
        self._check_input(x, (2, 5))
        self._check_eps(eps)
        compute = self.compute_dtype(x.dtype)
        ncl, moved_shape = self._ncl(x.astype(compute))
        n, c, length = ncl.shape
        if num_groups < 1 or c % num_groups:
            raise ValueError(f"{c} channels cannot form {num_groups} equal groups")
        weight, bias = self._channel_params(weight, bias, c, compute)
        x_hat = self.group_normalize(ncl, num_groups, eps)
        return self.to_output(self._from_ncl(self.affine(x_hat, weight, bias), moved_shape, x.ndim), x.dtype)

    def group_normalize(self, ncl, num_groups, eps):
        """GN-2: contiguous blocks of C/G channels of one sample are a row."""
        n, c, length = ncl.shape
        x_hat, _, _ = self.normalize_rows(ncl.reshape(n * num_groups, -1), eps)
        return x_hat.reshape(n, c, length)

    @_quiet
    def batch_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps,
                   num_batches_tracked, device, param_dtype=None):
        self._check_input(x, (2, 5))
        self._check_eps(eps)
        self._check_momentum(momentum, allow_none=True)
        compute = self.compute_dtype(x.dtype)
        ncl, moved_shape = self._ncl(x.astype(compute))
        n, c, length = ncl.shape
        weight, bias = self._channel_params(weight, bias, c, compute)
        mean_state, var_state = (self._param(s, (c,), name, compute) for s, name in
                                 ((running_mean, "running_mean"), (running_var, "running_var")))
        if self.uses_batch_statistics(training):
            x_hat, mean, variance = self.batch_statistics(ncl, eps)
        else:
            x_hat = self.frozen(ncl, mean_state, var_state, eps)
        if self.updates_running_statistics(training):
            if not self.uses_batch_statistics(training):
                _, mean, variance = self.batch_statistics(ncl, eps)
            alpha = self.alpha(momentum, num_batches_tracked)
            fed = self.fed_variance(variance, n * length)
            mean_state, var_state = self.update(mean_state, mean, alpha), self.update(var_state, fed, alpha)
        y = self._from_ncl(self.affine(x_hat, weight, bias), moved_shape, x.ndim)
        return (self.to_output(y, x.dtype), self.to_state(mean_state, running_mean.dtype),
                self.to_state(var_state, running_var.dtype))

    def batch_statistics(self, ncl, eps):
        """BN-1, BN-2: one row per channel, over the batch and every position.
        Returns x_hat (N, C, L), the batch mean (C,) and population variance (C,)."""
        n, c, length = ncl.shape
        x_hat, mean, variance = self.normalize_rows(ncl.transpose(1, 0, 2).reshape(c, -1), eps)
        return x_hat.reshape(c, n, length).transpose(1, 0, 2), mean[:, 0], variance[:, 0]

    def uses_batch_statistics(self, training: bool) -> bool:
        """BN-2 / BN-3: training normalizes with the batch statistics, evaluation with the running ones."""
        return training

    def updates_running_statistics(self, training: bool) -> bool:
        return training

    def frozen(self, ncl, mean, variance, eps):
        """BN-3: every element with the running statistics of its channel, (C,) each."""
        shape = (1, ncl.shape[1], 1)
        return (ncl - mean.reshape(shape)) * self.inverse_std(variance.reshape(shape), eps)

    @_quiet
    def instance_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps, device, param_dtype=None):
        self._check_input(x, (3, 5))
        self._check_eps(eps)
        tracked = running_mean is not None
        if tracked:
            self._check_momentum(momentum, allow_none=False)
        compute = self.compute_dtype(x.dtype)
        ncl, moved_shape = self._ncl(x.astype(compute))
        n, c, length = ncl.shape
        weight, bias = self._channel_params(weight, bias, c, compute)
        mean_state = var_state = None
        if tracked:
            mean_state, var_state = (self._param(s, (c,), name, compute) for s, name in
                                     ((running_mean, "running_mean"), (running_var, "running_var")))
        if training or not tracked:
            x_hat, mean, variance = self.instance_statistics(ncl, eps)
            if tracked:
                alpha = self.alpha(momentum, 0)
                fed = self.fed_variance(variance, length)
                mean_state = self.update(mean_state, self.instance_average(mean), alpha)
                var_state = self.update(var_state, self.instance_average(fed), alpha)
        else:
            x_hat = self.instance_frozen(ncl, mean_state, var_state, eps)
        y = self._from_ncl(self.affine(x_hat, weight, bias), moved_shape, x.ndim)
        if not tracked:
            return self.to_output(y, x.dtype), None, None
        return (self.to_output(y, x.dtype), self.to_state(mean_state, running_mean.dtype),
                self.to_state(var_state, running_var.dtype))

    def instance_statistics(self, ncl, eps):
        """IN-2: every (sample, channel) row with its own statistics: x_hat (N, C, L),
        mean and population variance (N, C)."""
        n, c, length = ncl.shape
        x_hat, mean, variance = self.normalize_rows(ncl.reshape(n * c, length), eps)
        return x_hat.reshape(n, c, length), mean.reshape(n, c), variance.reshape(n, c)

    def instance_average(self, per_instance):
        """IN-3: the batch average of the per-instance statistics, (N, C) -> (C,)."""
        return per_instance.mean(axis=0)

    def instance_frozen(self, ncl, mean, variance, eps):
        """IN-3 evaluation: BN-3 with each channel's running statistics."""
        return self.frozen(ncl, mean, variance, eps)

    # ------------------------------------------------------------------ the backward steps
    # spec/gradients.md. The backward recomputes the forward's statistics with the forward's
    # own steps (row_mean, row_variance, inverse_std, mean_square_rows) and forms dx in the
    # fused one-pass form of GRAD-3's note: both means in one pass over g and the centred
    # values, x_hat * mean(g x_hat) as centred * (r^2 mean(g centred)). Mutants override one
    # step. `rows` is again a 2-D array (slices, n) in the compute dtype.

    def backward_dtype(self, dtype) -> np.dtype:
        """GRAD-8.1: the reductions and x_hat, r, g in float32 for half inputs (float64 for float64)."""
        return self.compute_dtype(dtype)

    def reduce_rows(self, rows):
        """The sum of each row of a 2-D array, (R, 1): every reduction of the backward."""
        return rows.sum(axis=1, keepdims=True)

    def backward_sum(self, values, axes, reduce=None):
        """The sum over `axes` (keepdims), as rows of the summed elements for `reduce`
        (default reduce_rows)."""
        axes = tuple(a % values.ndim for a in axes)
        kept = [a for a in range(values.ndim) if a not in axes]
        moved = np.transpose(values, kept + list(axes))
        kept_shape = [values.shape[a] for a in kept]
        total = (reduce or self.reduce_rows)(moved.reshape(int(np.prod(kept_shape)), -1))
        out_shape = [1 if a in axes else values.shape[a] for a in range(values.ndim)]
        return total.reshape(out_shape)

    def backward_mean(self, values):
        """The mean over each row of `values` (R, n) -> (R, 1)."""
        return self.reduce_rows(values) / values.dtype.type(values.shape[1])

    def scale_cotangent(self, dy, weight):
        """GRAD-1: g = gamma dy, the cotangent of x_hat (gamma = 1 without a weight)."""
        return dy if weight is None else dy * weight

    def backward_statistics(self, rows, eps):
        """The forward's statistics of each row again: (centred values, mean, r)."""
        mean = self.row_mean(rows)
        return rows - mean, mean, self.inverse_std(self.row_variance(rows, mean), eps)

    def backward_rms_statistics(self, rows, eps):
        """RMS-2, RMS-3: r of each row."""
        return self.inverse_std(self.mean_square_rows(rows), eps)

    def gradient_mean(self, g):
        """The mean path of GRAD-3: mean(g) of each row."""
        return self.backward_mean(g)

    def gradient_projection(self, g, centred, rows, mean):
        """The variance path: mean(g (x - mu)) of each row, from the centred values
        (RMSNorm: centred is x, mean 0)."""
        return self.backward_mean(g * centred)

    def centring_input_gradient(self, g, centred, rows, mean, r):
        """GRAD-3, fused: r (g - mean(g) - (x - mu) r^2 mean(g (x - mu)))."""
        projection = self.gradient_projection(g, centred, rows, mean)
        return r * (g - self.gradient_mean(g) - centred * (r * r * projection))

    def rms_input_gradient(self, g, rows, r):
        """GRAD-4: r (g - x r^2 mean(g x)); no mean path."""
        projection = self.gradient_projection(g, rows, rows, 0)
        return r * (g - rows * (r * r * projection))

    def frozen_input_gradient(self, g, r_hat):
        """GRAD-5: gamma r_hat dy, element by element."""
        return g * r_hat

    def backward_uses_batch_statistics(self, training: bool) -> bool:
        """GRAD-3 in training, GRAD-5 (frozen running statistics) in evaluation (BatchNorm)."""
        return training

    def bias_gradient(self, dy, axes):
        """GRAD-2: d(beta), the sum of dy over the axes the parameter does not span."""
        return self.backward_sum(dy, axes)

    def weight_gradient(self, dy, x_hat, x, axes):
        """GRAD-2: d(gamma), the sum of dy x_hat (x: the input rows, unused here)."""
        return self.backward_sum(dy * x_hat, axes)

    def parameter_gradients(self, dy, x_hat, x, axes, weight, bias):
        """GRAD-2 and GRAD-7.2: (d(gamma), d(beta)), None for an absent parameter."""
        return (None if weight is None else self.weight_gradient(dy, x_hat, x, axes),
                None if bias is None else self.bias_gradient(dy, axes))

    def to_gradient(self, value, dtype):
        """GRAD-8.2: one rounding to the dtype of the input the gradient belongs to."""
        return value.astype(dtype)

    # ------------------------------------------------------------------ backward

    @_quiet
    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, **attrs):
        self._check_eps(eps)
        if tuple(dy.shape) != tuple(x.shape):
            raise ValueError(f"dy has shape {dy.shape}, expected that of x {x.shape}")
        compute = self.backward_dtype(x.dtype)
        xc, dyc = x.astype(compute), dy.astype(compute)
        if op in ("layer_norm", "rms_norm"):
            dx, dweight, dbias = self._layer_vjp(op, xc, dyc, weight, bias, eps, attrs["normalized_shape"], compute)
        elif op in ("batch_norm", "group_norm", "instance_norm"):
            dx, dweight, dbias = self._channel_vjp(op, xc, dyc, weight, bias, running_mean, running_var, training,
                                                   eps, attrs, compute)
        else:
            raise ValueError(f"unknown op {op!r}")
        # GRAD-8.2: each gradient in the dtype of its input (x's for a parameter the call lacks)
        return {"x": self.to_gradient(dx, x.dtype),
                "weight": None if dweight is None else self.to_gradient(dweight, getattr(weight, "dtype", x.dtype)),
                "bias": None if dbias is None else self.to_gradient(dbias, getattr(bias, "dtype", x.dtype))}

    def _layer_vjp(self, op, x, dy, weight, bias, eps, normalized_shape, compute):
        shape = self._normalized_shape(x, normalized_shape)
        rows, dy_rows = self.layer_rows(x, shape), self.layer_rows(dy, shape)
        weight = self._param(weight, shape, "weight", compute)
        bias = self._param(bias, shape, "bias", compute)
        g = self.scale_cotangent(dy_rows, None if weight is None else weight.reshape(1, -1))
        if op == "rms_norm":
            r = self.backward_rms_statistics(rows, eps)
            x_hat, dx = rows * r, self.rms_input_gradient(g, rows, r)
        else:
            centred, mean, r = self.backward_statistics(rows, eps)
            x_hat, dx = centred * r, self.centring_input_gradient(g, centred, rows, mean, r)
        dweight, dbias = self.parameter_gradients(dy_rows, x_hat, rows, (0,), weight, bias)
        return (dx.reshape(x.shape), None if dweight is None else dweight.reshape(shape),
                None if dbias is None else dbias.reshape(shape))

    def _channel_vjp(self, op, x, dy, weight, bias, running_mean, running_var, training, eps, attrs, compute):
        ncl, moved_shape = self._ncl(x)
        dy_ncl, _ = self._ncl(dy)
        n, c, length = ncl.shape
        weight, bias = self._channel_params(weight, bias, c, compute)
        g = self.scale_cotangent(dy_ncl, weight)
        if op == "batch_norm":
            frozen = not self.backward_uses_batch_statistics(training)
            if frozen and running_mean is None:  # BN-4.3: a fresh layer's state
                running_mean, running_var = np.zeros(c, compute), np.ones(c, compute)

            def to_rows(a):
                return a.transpose(1, 0, 2).reshape(c, -1)

            def from_rows(a):
                return a.reshape(c, n, length).transpose(1, 0, 2)
        elif op == "group_norm":
            groups = attrs["num_groups"]
            if groups < 1 or c % groups:
                raise ValueError(f"{c} channels cannot form {groups} equal groups")
            frozen = False

            def to_rows(a):
                return a.reshape(n * groups, -1)

            def from_rows(a):
                return a.reshape(n, c, length)
        else:
            frozen = running_mean is not None and not training

            def to_rows(a):
                return a.reshape(n * c, length)

            def from_rows(a):
                return a.reshape(n, c, length)
        if frozen:
            shape = (1, c, 1)
            mean = self._param(running_mean, (c,), "running_mean", compute).reshape(shape)
            r_hat = self.inverse_std(self._param(running_var, (c,), "running_var", compute).reshape(shape), eps)
            x_hat, dx = (ncl - mean) * r_hat, self.frozen_input_gradient(g, r_hat)
        else:
            rows = to_rows(ncl)
            centred, mean, r = self.backward_statistics(rows, eps)
            x_hat = from_rows(centred * r)
            dx = from_rows(self.centring_input_gradient(to_rows(g), centred, rows, mean, r))
        dweight, dbias = self.parameter_gradients(dy_ncl, x_hat, ncl, (0, 2), weight, bias)
        return (self._from_ncl(dx, moved_shape, x.ndim), None if dweight is None else dweight.reshape(c),
                None if dbias is None else dbias.reshape(c))
