"""Running statistics (spec BN-3, BN-4, IN-3): the update rule and the frozen affine map."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normspec.errors import ConfigurationError

from . import _validate
from ._steps import Steps

ESTIMATORS = ("unbiased", "biased")


class RunningResult(NamedTuple):
    """What BatchNorm and InstanceNorm return: the output and the running state after the call."""

    output: np.ndarray
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: int

    @classmethod
    def rounded(cls, output, running_mean, running_var, num_batches_tracked, *, output_dtype, state_dtype,
                exact: bool) -> "RunningResult":
        """The float64 results rounded once (NUM-2.2): the output to the input's dtype, the
        running statistics to their own; None stays None (no running statistics)."""
        def state(values):
            return None if values is None else _validate.rounded(values, state_dtype, exact)
        return cls(_validate.rounded(output, output_dtype, exact), state(running_mean), state(running_var),
                   num_batches_tracked)


def estimator_variance(population_variance: np.ndarray, m: int, estimator: str) -> np.ndarray:
    """BN-4.4: the variance fed to the running update, biased or unbiased (m / (m - 1))."""
    if estimator not in ESTIMATORS:
        raise ConfigurationError(
            "BN-4.4", f"running_var_estimator={estimator!r}; the profile parameter is one of {ESTIMATORS}."
        )
    if estimator == "biased":
        return population_variance
    if m < 2:
        raise ConfigurationError(
            "BN-5.2",
            "training with a single value per channel makes the unbiased running-variance "
            "estimate undefined (division by m - 1 = 0); use more than one value per channel.",
        )
    return population_variance * (m / (m - 1))


def state_pair(running_mean, running_var, *, op: str):
    """ERR-1.2: running statistics come as a pair or not at all."""
    if (running_mean is None) != (running_var is None):
        raise ConfigurationError("ERR-1.2", f"{op}: running_mean and running_var are given together or not at all.")


def update(running: np.ndarray, batch_statistic: np.ndarray, momentum: float | None, num_batches_tracked: int):
    """BN-4.1 (alpha = momentum) or, for momentum None, BN-4.2 (alpha = 1 / (k + 1))."""
    alpha = 1.0 / (num_batches_tracked + 1) if momentum is None else momentum
    with np.errstate(invalid="ignore"):  # 0 * Inf is NaN, as IEEE 754 evaluates the formula (NUM-4.3)
        return (1.0 - alpha) * running + alpha * batch_statistic


def frozen_steps(slices: np.ndarray, running_mean, running_var, eps: float, *, op: str) -> Steps:
    """BN-3: evaluation normalizes each channel's slice (a row of `slices`) with the
    running statistics; nothing is reduced, so the reduction length is 1."""
    if running_mean is None or running_var is None:
        raise ConfigurationError("ERR-1.8", f"{op} in evaluation needs running_mean and running_var (BN-3).")
    mean, variance = running_mean.reshape(-1, 1), running_var.reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inverse_std = 1.0 / np.sqrt(variance + eps)
        normalized = (slices - mean) * inverse_std
        conditioning = (np.abs(slices) + np.abs(mean)) * inverse_std
    return Steps(1, mean, variance, inverse_std, normalized, conditioning)
