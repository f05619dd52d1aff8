"""NUM-1.1's bound at production lengths (1,024 to 65,536 elements), validated rather than
assumed: float32 LayerNorm rows computed with the summation orders real kernels use all lie
within `tolerance.output_bound` of the exact result, at offsets up to the large-offset
family's 10^4 times the spread, and the one-pass variance E[x^2] - E[x]^2 does not.

The exact result is x_hat from math.fsum in float64: the float32 data are exact in float64,
each sum is correctly rounded, and what remains (the division by n, the centring and the
square root, each within a float64 ulp, amplified at most by kappa <= 10^4) is below 10^-7 of
the smallest bound compared here; test_the_exact_rows_agree_with_mpmath checks that at 60 digits.
"""
import math

import mpmath
import numpy as np
import pytest

from normspec import reference, tolerance

F = np.float32
EPS = 1e-5
LENGTHS = (1024, 4096, 12288, 65536)
OFFSETS = (0.0, 1e2, 1e3, 1e4)  # the offset over a unit spread: kappa up to 10^4
ROWS = 2  # rows per offset


def _rows(n: int) -> np.ndarray:
    """float32 rows offset + z, ROWS per offset, z standard normal."""
    rng = np.random.default_rng(n)
    offsets = np.repeat(OFFSETS, ROWS)[:, None]
    return (offsets + rng.standard_normal((offsets.size, n))).astype(F)


def _exact(x: np.ndarray) -> np.ndarray:
    """x_hat of each row from correctly rounded float64 sums (module docstring)."""
    out = np.empty(x.shape)
    for i, row in enumerate(x.astype(np.float64)):
        mean = math.fsum(row) / row.size
        d = row - mean
        out[i] = d / math.sqrt(math.fsum(d * d) / row.size + EPS)
    return out


# ---------------------------------------------------------------- float32 sums in several orders

def sequential(v):
    """Recursive summation, left to right (np.cumsum adds in order)."""
    return np.cumsum(v, axis=-1, dtype=F)[..., -1]


def pairwise(v):
    """Adjacent pairs, level by level (a zero pads an odd level: exact)."""
    v = v.astype(F)
    while v.shape[-1] > 1:
        if v.shape[-1] % 2:
            v = np.concatenate([v, np.zeros(v.shape[:-1] + (1,), F)], axis=-1)
        v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


def blocked(v, block: int = 256):
    """Sequential sums of blocks of 256 (one thread block each), then of the block sums."""
    pad = np.zeros(v.shape[:-1] + ((-v.shape[-1]) % block,), F)
    v = np.concatenate([v.astype(F), pad], axis=-1)
    return sequential(sequential(v.reshape(v.shape[:-1] + (-1, block))))


def two_pass(x, total):
    """mean = total(x) / n, var = total((x - mean)^2) / n."""
    n = F(x.shape[-1])
    mean = (total(x) / n).astype(F)[:, None]
    d = (x - mean).astype(F)
    return mean, (total(d * d) / n).astype(F)[:, None]


def welford(x):
    """Welford's updating algorithm, element by element (vectorized over the rows)."""
    mean, m2 = np.zeros(x.shape[0], F), np.zeros(x.shape[0], F)
    for i in range(x.shape[1]):
        delta = x[:, i] - mean
        mean = mean + delta / F(i + 1)
        m2 = m2 + delta * (x[:, i] - mean)
    return mean[:, None], (m2 / F(x.shape[1]))[:, None]


def chan(x, block: int = 256):
    """Two-pass statistics of blocks of 256, merged pairwise by Chan, Golub and LeVeque's update
    (a GPU kernel's per-thread statistics and tree merge)."""
    parts = []
    for start in range(0, x.shape[1], block):
        b = x[:, start:start + block]
        mean = (sequential(b) / F(b.shape[1])).astype(F)
        parts.append((F(b.shape[1]), mean, sequential((b - mean[:, None]) ** 2)))
    while len(parts) > 1:
        merged = []
        for (na, ma, sa), (nb, mb, sb) in zip(parts[0::2], parts[1::2]):
            n = F(na + nb)
            delta = (mb - ma).astype(F)
            merged.append((n, (ma + delta * (nb / n)).astype(F), (sa + sb + delta * delta * (na * nb / n)).astype(F)))
        parts = merged + parts[len(merged) * 2:]
    n, mean, m2 = parts[0]
    return mean[:, None], (m2 / n)[:, None]


def one_pass(x, total=sequential):
    """var = E[x^2] - E[x]^2, clamped at 0: the formula NUM-1.1's note rejects."""
    n = F(x.shape[-1])
    mean = (total(x) / n).astype(F)
    return mean[:, None], np.maximum(total(x * x) / n - mean * mean, 0).astype(F)[:, None]


ORDERS = {
    "sequential": lambda x: two_pass(x, sequential),
    "pairwise": lambda x: two_pass(x, pairwise),
    "blocked_256": lambda x: two_pass(x, blocked),
    "welford": welford,
    "chan_256": chan,
}


def _normalized(x, mean, variance):
    """x_hat = (x - mean) * 1/sqrt(var + eps), each step rounded to float32."""
    r = (F(1) / np.sqrt((variance + F(EPS)).astype(F))).astype(F)
    return ((x - mean).astype(F) * r).astype(F).astype(np.float64)


def _excess(n: int, statistics) -> np.ndarray:
    """Per row, the largest |error| over NUM-1.1's bound (float32 input, no affine step)."""
    x = _rows(n)
    _, steps = reference.layer_norm(x.astype(np.float64), (n,), eps=EPS, exact=True, return_steps=True)
    exact = _exact(x)
    bound = tolerance.output_bound(steps, exact, None, None, input_dtype=F)
    return (np.abs(_normalized(x, *statistics(x)) - exact) / bound).max(axis=1)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("order", ORDERS)
def test_correct_summation_orders_meet_the_bound(order, n):
    excess = _excess(n, ORDERS[order])
    assert (excess <= 1).all(), (f"{order} summation, n={n}: |error| / bound per offset "
                                 f"{dict(zip(np.repeat(OFFSETS, ROWS), excess.round(3)))}")


@pytest.mark.parametrize("n", LENGTHS)
def test_the_one_pass_variance_fails_at_large_offsets(n):
    """At every length some row with an offset of 10^3 or more over its spread is outside
    the bound; none with offset 0 is (the formula is fine on centred data)."""
    excess = _excess(n, one_pass)
    large = np.repeat(OFFSETS, ROWS) >= 1e3
    assert excess[large].max() > 1, f"n={n}: one-pass |error| / bound {excess.round(3)}"
    assert (excess[np.repeat(OFFSETS, ROWS) == 0] <= 1).all()


def test_the_exact_rows_agree_with_mpmath():
    """The fsum reference against 60 digits, on the worst-conditioned rows (offset 10^4)."""
    x = _rows(1024)[-ROWS:]
    with mpmath.workdps(60):
        for row, got in zip(x, _exact(x)):
            values = [mpmath.mpf(float(v)) for v in row]
            mean = mpmath.fsum(values) / len(values)
            r = 1 / mpmath.sqrt(mpmath.fsum([(v - mean) ** 2 for v in values]) / len(values) + mpmath.mpf(EPS))
            exact = np.array([float((v - mean) * r) for v in values])
            assert np.abs(got - exact).max() <= 1e-11, np.abs(got - exact).max()
