"""BN-4.1, NUM-1.5 and NUM-4.3 (spec 0.5.0): the admitted forms of the running update.

For many (s_old, s_batch, alpha) per dtype of the running statistic (float16, bfloat16,
float32, float64; computed in float32, or float64 for float64, NUM-2.1), among them
|s_old| >> |s_batch| with alpha near 1, |s_batch| >> |s_old| with alpha near 0, s_batch
near s_old, the usual momenta, non-negative (variance) pairs and values near the underflow
threshold, each form is evaluated in the compute dtype with NumPy's IEEE 754 arithmetic,
each weight the exact one rounded once to it, and rounded to the statistic's dtype. Its
error against the exact (1 - alpha) s_old + alpha s_batch, in rational arithmetic
(fractions.Fraction), must be within the suite's bound (normspec.tolerance.running_bound,
with an exact batch statistic: delta_s = 0). Wrong updates must exceed it, so the bound is
not vacuous; the increment form must exceed the bound of spec 0.4.0, so the new term is
needed; and it must come within a few times of the new one, so the term is not loose.

    python tests/test_running_update_forms.py     prints the largest error/bound ratios
"""
from __future__ import annotations

import functools
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from normspec import oracle, tolerance
from normspec.cases import Case
from normspec.driver import run_case
from normspec.zoo.correct import LerpUpdateKernel

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
SAMPLES = 1500  # per family and dtype: 10,500 triples per dtype
MOMENTA = np.array([0.0, 1.0, 0.1, 0.01, 0.001, 0.9, 0.99, 0.999, 0.5, 1 / 3, 0.25, 1 / 7])


def compute_dtype(state) -> np.dtype:
    """NUM-2.1: float32 for float16, bfloat16 and float32 statistics, float64 for float64."""
    return np.dtype(np.float64) if state == np.float64 else np.dtype(np.float32)


@functools.cache
def triples(name: str):
    """(s_old in the statistic's dtype, s_batch in the compute dtype, alpha float64), fixed seed."""
    state, rng, k = DTYPES[name], np.random.default_rng(25), SAMPLES

    def sign():
        return rng.choice([-1.0, 1.0], k)

    def magnitude(low, high):
        return 10.0 ** rng.uniform(low, high, k)

    tiny = float(ml_dtypes.finfo(state).smallest_normal)
    s_far, b_far, s_near = sign() * magnitude(0, 3), sign() * magnitude(0, 3), sign() * magnitude(-3, 3)
    families = [
        (sign() * magnitude(-3, 3), sign() * magnitude(-3, 3), rng.uniform(0, 1, k)),  # anything
        (s_far, s_far * sign() * magnitude(-8, -2), 1 - magnitude(-8, -0.3)),  # |s_old| >> |s_batch|, alpha near 1
        (b_far * sign() * magnitude(-8, -2), b_far, magnitude(-8, -0.3)),  # |s_batch| >> |s_old|, alpha near 0
        (s_near, s_near * (1 + sign() * magnitude(-7, -1)), rng.uniform(0, 1, k)),  # s_batch near s_old
        (sign() * magnitude(-3, 3), sign() * magnitude(-3, 3), rng.choice(MOMENTA, k)),  # the usual momenta, 0, 1
        (magnitude(-3, 3), magnitude(-3, 3), rng.uniform(0, 1, k)),  # variances: both non-negative
        (sign() * tiny * magnitude(-3, 1), sign() * tiny * magnitude(-3, 1), rng.uniform(0, 1, k)),  # underflow
    ]
    s_old, s_batch, alpha = (np.concatenate(column) for column in zip(*families))
    return s_old.astype(state), s_batch.astype(compute_dtype(state)), alpha


# Each form: (s_old, s_batch, weight, compute dtype) -> the update in the compute dtype, where
# `weight` is alpha, or m = 1 - alpha (a float64, as a framework is given it) for the
# old-value forms (OLD_VALUE). Python's float64 forms 1 - weight before the rounding to the
# compute dtype, as `(1 - momentum) * tensor` does in PyTorch, Keras and Flax.
def weighted(s, b, alpha, c):
    return (1.0 - alpha).astype(c) * s.astype(c) + alpha.astype(c) * b


def increment(s, b, alpha, c):
    """TensorFlow's assign_moving_average: the weight cast to the variable's dtype."""
    s = s.astype(c)
    return s + alpha.astype(c) * (b - s)


def old_value_weight(s, b, m, c):
    return m.astype(c) * s.astype(c) + (1.0 - m).astype(c) * b


def weighted_from_rounded_alpha(s, b, alpha, c):
    """1 - alpha formed in the compute dtype from the rounded alpha."""
    a = alpha.astype(c)
    return (c.type(1) - a) * s.astype(c) + a * b


def two_sided(s, b, alpha, c):
    """torch.lerp's: the increment form for alpha < 1/2, b - (1 - alpha)(b - s) above."""
    s, a = s.astype(c), alpha.astype(c)
    return np.where(alpha < 0.5, s + a * (b - s), b - (b - s) * (c.type(1) - a))


ADMITTED = {"weighted": weighted, "increment": increment, "old-value weight": old_value_weight,
            "weighted, 1 - fl(alpha)": weighted_from_rounded_alpha, "two-sided (torch.lerp)": two_sided}


def swapped(s, b, alpha, c):
    """The weights on the wrong sides: alpha s + (1 - alpha) b (mutant-momentum-side-swapped)."""
    return alpha.astype(c) * s.astype(c) + (1.0 - alpha).astype(c) * b


def increment_in_half(s, b, alpha, c):
    """The increment form in the statistic's own half-precision dtype, not in float32 (NUM-2.1)."""
    return s + alpha.astype(s.dtype) * (b.astype(s.dtype) - s)


def weight_in_bfloat16(s, b, alpha, c):
    """The increment form with its weight stored in bfloat16."""
    s = s.astype(c)
    return s + alpha.astype(ml_dtypes.bfloat16).astype(c) * (b - s)


def old_value_from_rounded_m(s, b, m, c):
    """1 - m formed in the compute dtype from the rounded m: the new-batch weight is then off
    by up to u m, which NUM-1.5 does not admit for a small alpha (its note)."""
    m = m.astype(c)
    return m * s.astype(c) + (c.type(1) - m) * b


WRONG = {"swapped weights": swapped, "increment in half precision": increment_in_half,
         "weight in bfloat16": weight_in_bfloat16, "old-value, 1 - fl(m)": old_value_from_rounded_m}
OLD_VALUE = {old_value_weight, old_value_from_rounded_m}


@functools.cache
def ratios(name: str, form_name: str, spec_0_4: bool = False) -> np.ndarray:
    """|computed - exact| / bound for every triple of `name`: the bound of tolerance.running_bound,
    or with `spec_0_4` that of spec 0.4.0 (without the increment term)."""
    form = {**ADMITTED, **WRONG}[form_name]
    s_old, s_batch, alpha = triples(name)
    state, compute = DTYPES[name], compute_dtype(DTYPES[name])
    weight = 1.0 - alpha if form in OLD_VALUE else alpha
    with np.errstate(all="ignore"):
        computed = form(s_old, s_batch, weight, compute).astype(state)
    # The new-batch weight the implementation applies: 1 - m of the m it was given (NUM-1.5).
    alphas = [1 - Fraction(float(w)) if form in OLD_VALUE else Fraction(float(w)) for w in weight]
    exact = [(1 - a) * Fraction(float(s)) + a * Fraction(float(b)) for a, s, b in zip(alphas, s_old, s_batch)]
    error = np.array([float(abs(Fraction(float(v)) - e)) if np.isfinite(float(v)) else np.inf
                      for v, e in zip(computed, exact)])
    old, new = s_old.astype(np.float64), np.array([float(e) for e in exact])
    bound = tolerance.running_bound(alpha=np.array([float(a) for a in alphas]), old=old,
                                    batch_statistic=np.abs(s_batch.astype(np.float64)), new=new, batch_error=0.0,
                                    input_dtype=state)
    if spec_0_4:  # spec 0.4.0's bound had no increment term 3u |s_new - s_old|
        with np.errstate(invalid="ignore"):
            bound = bound - 3 * tolerance.compute_roundoff(state) * np.abs(new - old)
    return error / bound


@pytest.mark.parametrize("form", ADMITTED)
@pytest.mark.parametrize("name", DTYPES)
def test_admitted_forms_are_within_the_bound(name, form):
    ratio = ratios(name, form)
    assert ratio.max() <= 1, f"{form} in {name}: {int((ratio > 1).sum())} outside, worst {ratio.max():.3g}x the bound"


@pytest.mark.parametrize("form", WRONG)
@pytest.mark.parametrize("name", DTYPES)
def test_wrong_updates_exceed_the_bound(name, form):
    if form == "increment in half precision" and name in ("float32", "float64"):
        pytest.skip("the statistic's dtype is the compute dtype")
    if form == "old-value, 1 - fl(m)" and name == "float64":
        pytest.skip("float64's 1 - m is Python's: the same roundings as the admitted form")
    assert ratios(name, form).max() > 10


@pytest.mark.parametrize("name", DTYPES)
def test_the_increment_term_is_needed_and_tight(name):
    """The increment form misses spec 0.4.0's bound (the weighted form meets it), and comes
    within a few times of the new one where the compute dtype is the statistic's."""
    assert ratios(name, "increment", spec_0_4=True).max() > 100
    assert ratios(name, "weighted", spec_0_4=True).max() <= 1
    if name in ("float32", "float64"):
        assert ratios(name, "increment").max() > 0.3


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("infinity", [np.inf, -np.inf])
def test_an_infinite_old_statistic(name, infinity):
    """NUM-4.3: for alpha in [0, 1) each admitted form gives the same infinity or NaN, and the
    suite admits exactly those; for alpha = 1 each gives NaN, the reference's value."""
    state = DTYPES[name]
    compute = compute_dtype(state)
    alpha = np.array([0.0, 1e-3, 0.1, 0.5, 0.9, 0.999, 1.0])
    s_old, s_batch = np.full(alpha.shape, infinity).astype(state), np.full(alpha.shape, 0.75, compute)
    below_one = alpha < 1
    assert (oracle.running_nan_allowed(s_old, 0.5) & oracle.running_nan_allowed(s_old, 0.0)).all()
    assert not oracle.running_nan_allowed(s_old, 1.0).any()
    assert not oracle.running_nan_allowed(np.ones(3), 0.5).any()
    with np.errstate(all="ignore"):
        for form in ADMITTED.values():
            weight = 1.0 - alpha if form in OLD_VALUE else alpha
            value = form(s_old, s_batch, weight, compute).astype(np.float64)
            assert (np.isnan(value) | (value == infinity))[below_one].all(), form.__name__
            assert np.isnan(value[~below_one]).all(), form.__name__
        assert (weighted(s_old, s_batch, alpha, compute)[below_one] == infinity).all()
        assert np.isnan(increment(s_old, s_batch, alpha, compute)).all()


# Cases on which the suite (spec 0.4.0) flagged zoo-lerp-update, the increment form
# (normspec check normspec.zoo.correct:LerpUpdateKernel --ops batch_norm,instance_norm).
def _case(op, dtype, inputs, momentum, params=None, eps=1e-5):
    dt = DTYPES[dtype]
    arrays = {key: None if value is None else np.array(value, dt)
              for key, value in {"weight": None, "bias": None, "running_mean": None, "running_var": None,
                                 **(params or {})}.items()}
    return Case(op=op, dtype=dtype, eps=eps, attrs={}, inputs=[np.array(x, dt) for x in inputs],
                training=[True] * len(inputs), momentum=momentum, channel_axis=1, params=arrays)


FLAGGED = {
    # variance 1 -> 0.00845 with alpha = 1: 1 + (0.00845 - 1) is an ulp of 1 off (3.06x spec 0.4.0's bound)
    "variance, alpha 1": _case("batch_norm", "float32", [[[[0.065, -0.065]]]], 1.0, eps=0.0),
    # mean 1.2578125 -> 2.9e-37 with alpha = 1: s + (b - s) = 0 (246x)
    "mean, alpha 1, tiny batch": _case(
        "batch_norm", "bfloat16", [[[9.771296791210265e-38, -9.771296791210265e-38],
                                    [4.819526838371379e-37, 7.530510684955279e-38]]], 1.0,
        {"bias": [0.169921875, 1.7421875], "running_mean": [1.2578125, -1.9921875],
         "running_var": [3.46875, 0.380859375]}),
    # an infinite running mean: Inf + 0.1 (b - Inf) = NaN where the weighted forms give Inf (NUM-4.3)
    "infinite running mean": _case("instance_norm", "float32", [[[[-1.5625, -3.6875]]]], 0.1,
                                   {"running_mean": [np.inf], "running_var": [2.99]}),
    # the float16 running variance overflows to Inf at step 1, and step 2's update makes it NaN
    "overflowed running variance": _case("batch_norm", "float16", [[[[[860.0, -116.0, 372.0, 860.0, -116.0]]]],
                                                                   [[[[24.0, 196.0, -148.0, 196.0, -148.0]]]]], 0.5),
}


@pytest.mark.parametrize("name", FLAGGED)
def test_the_increment_form_kernel_passes_the_cases_that_flagged_it(name):
    run_case(LerpUpdateKernel(), FLAGGED[name], "cpu")


def main() -> None:
    print(f"largest |error| / bound of NUM-1.5, {7 * SAMPLES} triples per dtype (exact arithmetic; "
          f"in brackets: against spec 0.4.0's bound)")
    print(f"{'form':<28}" + "".join(f"{name:>22}" for name in DTYPES))
    for form in {**ADMITTED, **WRONG}:
        cells = []
        for name in DTYPES:
            cells.append(f"{ratios(name, form).max():.3g} [{ratios(name, form, True).max():.3g}]")
        print(f"{form:<28}" + "".join(f"{cell:>22}" for cell in cells))


if __name__ == "__main__":
    main()
