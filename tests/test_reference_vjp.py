"""The reference VJPs (spec/gradients.md) verified, not trusted: against central
differences of the forward computed in mpmath at 80 digits, on random and
ill-conditioned inputs and cotangents, for every op and layout, with and without
the affine parameters; then the laws of GRAD-2 to GRAD-4, the dtypes of GRAD-8,
and torch.autograd in float64 held to the bound of GRAD-6."""
import math
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import ml_dtypes
import mpmath
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from normspec import clauses, reference, tolerance
from normspec.dtypes import numpy_dtype
from normspec.errors import ConfigurationError
from normspec.registry import DTYPES, OPS
from normspec.strategies import shapes, slice_ids

mpmath.mp.dps = 60
ROOT = Path(__file__).resolve().parent.parent
VJP = {op: getattr(reference, f"{op}_vjp") for op in OPS}
FROZEN_MODES = ("batch_norm", "instance_norm")  # ops with a GRAD-5 mode


class Case:
    """One backward call: the forward's arguments plus dy, and the parameter layout."""

    def __init__(self, op, x, dy, weight, bias, attrs, channel_axis, eps, frozen=False, running=(None, None)):
        self.op, self.x, self.dy, self.weight, self.bias = op, x, dy, weight, bias
        self.attrs, self.channel_axis, self.eps, self.frozen, self.running = attrs, channel_axis, eps, frozen, running
        if OPS[op].has_channel_axis:
            axis = channel_axis % x.ndim
            self.parameter_axes, self.parameter_index = (axis,), np.indices(x.shape)[axis]
        else:
            k = len(attrs["normalized_shape"])
            self.parameter_axes = tuple(range(x.ndim - k, x.ndim))
            self.parameter_index = np.arange(x.size).reshape(x.shape) % int(np.prod(attrs["normalized_shape"]))
        self.ids = slice_ids(op, x.shape, attrs, channel_axis)

    def __repr__(self):  # printed by Hypothesis for a failing example: enough to reproduce it
        fields = ("op", "x", "dy", "weight", "bias", "attrs", "channel_axis", "eps", "frozen", "running")
        show = lambda v: v.tolist() if isinstance(v, np.ndarray) else (  # noqa: E731  full precision
            tuple(map(show, v)) if isinstance(v, tuple) else v)
        return "Case(" + ", ".join(f"{k}={show(getattr(self, k))!r}" for k in fields) + ")"

    def arguments(self):
        """The forward's positional and keyword arguments (after x)."""
        shape_attr = [self.attrs[OPS[self.op].shape_attr]] if OPS[self.op].shape_attr else []
        args = [*shape_attr, self.weight, self.bias]
        kwargs = {"eps": self.eps}
        if OPS[self.op].has_channel_axis:
            kwargs["channel_axis"] = self.channel_axis
        if OPS[self.op].stateful:
            args += list(self.running)
            kwargs["running_var_estimator"] = "biased"  # admits m = 1 (BN-5.1); gradients do not depend on it
            kwargs["training" if self.op == "batch_norm" else "use_input_stats"] = not self.frozen
        return args, kwargs

    def expanded(self, parameter):
        """A parameter broadcast to x's layout (None stays None)."""
        return None if parameter is None else parameter.ravel()[self.parameter_index]

    def reference(self, exact=True):
        args, kwargs = self.arguments()
        gradient = VJP[self.op](self.x, self.dy, *args, exact=exact, **kwargs)
        forward = OPS[self.op].reference(self.x, *args, exact=True, return_steps=True, **kwargs)
        return gradient, forward[1]


# --- the exact VJP: central differences of the forward, in mpmath ---------------------

def _normalized(values, eps, *, center, frozen=None):
    """x_hat of one slice by NORM-1 .. NORM-5 (RMS-2 without centring; BN-3 with the
    per-element running statistics `frozen`), and the slice's spread for the step size."""
    if frozen is not None:
        stds = [mpmath.sqrt(variance + eps) for _, variance in frozen]
        return [(v - mean) / s for v, (mean, _), s in zip(values, frozen, stds)], min(stds)
    n = len(values)
    mean = mpmath.fsum(values) / n if center else 0
    std = mpmath.sqrt(mpmath.fsum([(v - mean) ** 2 for v in values]) / n + eps)
    return [(v - mean) / std for v in values], std


def _central_difference(f, at, h):
    """f'(at) by a central difference at 20 digits more than mp.dps, and the change from
    mp.dps digits: a generous estimate of the rounding noise of the difference (far below
    a float64 ulp of the magnitudes), so that a gradient the reference gets exactly, such
    as an exact zero, is not judged against that noise."""
    value = (f(at + h) - f(at - h)) / (2 * h)
    with mpmath.workdps(mpmath.mp.dps + 20):
        finer = (f(at + h) - f(at - h)) / (2 * h)
    return finer, abs(finer - value)


def _exact_vjp(case: Case) -> tuple:
    """dx, dgamma, dbeta as derivatives of L = sum(dy * y) (GRAD-1), each by a central
    difference with a step of 1e-20 of the slice's spread, in 80-digit arithmetic; and
    the estimated noise of each difference."""
    mp = np.vectorize(mpmath.mpf, otypes=[object])
    x, dy = mp(case.x.ravel()), mp(case.dy.ravel())
    gamma = mp(case.expanded(case.weight).ravel()) if case.weight is not None else mp(np.ones(x.size))
    beta = mp(case.expanded(case.bias).ravel()) if case.bias is not None else mp(np.zeros(x.size))
    eps, center = mpmath.mpf(case.eps), OPS[case.op].centring
    running_mean, running_var = (mp(case.expanded(r).ravel()) if r is not None else None for r in case.running)
    ids, dx, x_hat = case.ids.ravel(), np.empty((2, x.size)), np.empty(x.size, dtype=object)
    for slice_id in np.unique(ids):
        where = np.flatnonzero(ids == slice_id)
        frozen = list(zip(running_mean[where], running_var[where])) if case.frozen else None

        def loss(values):  # the slice's part of L; the other slices do not depend on it
            normalized, _ = _normalized(values, eps, center=center, frozen=frozen)
            return mpmath.fsum(d * (g * v + b) for d, g, v, b in zip(dy[where], gamma[where], normalized, beta[where]))

        x_hat[where], spread = _normalized(list(x[where]), eps, center=center, frozen=frozen)
        h = spread * mpmath.mpf(10) ** -20
        for position, i in enumerate(where):
            def moved(value, position=position):
                values = list(x[where])
                values[position] = value
                return loss(values)
            dx[:, i] = [float(v) for v in _central_difference(moved, x[i], h)]
    gradient = {"x": dx[0].reshape(case.x.shape), "weight": None, "bias": None}
    noise = {"x": dx[1].reshape(case.x.shape), "weight": 0.0, "bias": 0.0}
    index = case.parameter_index.ravel()
    for name, parameter in (("weight", case.weight), ("bias", case.bias)):
        if parameter is None:
            continue
        values = np.empty((2, parameter.size))
        for c in range(parameter.size):
            members = np.flatnonzero(index == c)
            def loss(value, members=members, name=name):  # L as a function of gamma_c or beta_c alone
                return mpmath.fsum(dy[i] * ((value if name == "weight" else gamma[i]) * x_hat[i]
                                            + (value if name == "bias" else beta[i])) for i in members)
            at = mpmath.mpf(float(parameter.ravel()[c]))
            values[:, c] = [float(v) for v in _central_difference(loss, at, mpmath.mpf(10) ** -20 * (1 + abs(at)))]
        gradient[name], noise[name] = values[0].reshape(parameter.shape), values[1].reshape(parameter.shape)
    return gradient, noise


# --- inputs --------------------------------------------------------------------------

@st.composite
def _small_shapes(draw, op, channel_axis):
    """Shapes small enough for the mpmath differences (a few hundred elements at most)."""
    if op in ("layer_norm", "rms_norm"):
        normalized = draw(st.lists(st.integers(1, 6), min_size=1, max_size=2))
        leading = draw(st.lists(st.integers(1, 3), max_size=2))
        return tuple(leading + normalized), {"normalized_shape": tuple(normalized)}
    spatial = draw(st.lists(st.integers(1, 4), min_size=OPS[op].ranks[0] - 2, max_size=2))
    if op == "group_norm":
        groups = draw(st.integers(1, 3))
        channels, attrs = groups * draw(st.integers(1, 2)), {"num_groups": groups}
    else:
        channels, attrs = draw(st.integers(1, 3)), {}
    dims = [draw(st.integers(1, 3))] + spatial
    dims.insert(1 if channel_axis == 1 else len(dims), channels)
    return tuple(dims), attrs


@st.composite
def _cases(draw, op, shape_strategy=_small_shapes, eps_values=(1e-5, 1e-3, 1e-12)):
    channel_axis = draw(st.sampled_from([1, -1])) if OPS[op].has_channel_axis else 1
    shape, attrs = draw(shape_strategy(op=op, channel_axis=channel_axis))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1.0, 1e4, 1e8, -1e12]))
    spread = 10.0 ** draw(st.integers(-3, 3))
    x = offset + spread * rng.standard_normal(shape)
    parameter_shape = attrs["normalized_shape"] if "normalized_shape" in attrs else (shape[channel_axis],)
    weight, bias = (rng.standard_normal(parameter_shape) if draw(st.booleans()) else None for _ in range(2))
    frozen = op in FROZEN_MODES and draw(st.booleans())
    running = (offset + spread * rng.standard_normal(parameter_shape),
               spread**2 * (0.5 + rng.random(parameter_shape))) if frozen else (None, None)
    family = draw(st.sampled_from(["normal", "offset", "aligned", "constant"]))
    dy = 10.0 ** draw(st.integers(-2, 2)) * rng.standard_normal(shape)
    if family == "offset":  # a large common part: g - mean(g) cancels
        dy = dy + 1e6
    elif family == "constant":  # with gamma constant over the slice, dx = 0 exactly
        dy = np.full(shape, 1.5)
    elif family == "aligned":  # dy along the output: the terms of GRAD-3 nearly cancel
        probe = Case(op, x, dy, weight, bias, attrs, channel_axis, 1e-5, frozen, running)
        dy = 2.0 + 3.0 * probe.reference()[1].normalized + 1e-6 * dy
    if draw(st.booleans()):  # float32-representable data, as frameworks see it
        x, dy, weight, bias = (None if a is None else a.astype(np.float32).astype(np.float64)
                               for a in (x, dy, weight, bias))
        running = tuple(None if a is None else a.astype(np.float32).astype(np.float64) for a in running)
    return Case(op, x, dy, weight, bias, attrs, channel_axis, draw(st.sampled_from(eps_values)), frozen, running)


def _assert_within(name, computed, expected, bound, what):
    if computed is None and expected is None:
        return
    computed, expected = np.broadcast_arrays(np.asarray(computed, dtype=np.float64), expected)
    error = np.abs(computed - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        worst = np.unravel_index(np.argmax(np.where(error > 0, error / bound, 0.0)), np.shape(error))
    assert np.all(error <= bound), (f"{what} {name}: {computed[worst]!r} vs {expected[worst]!r} at {worst}; "
                                    f"error {error[worst]:.3g} > bound {bound[worst]:.3g}")


# --- the reference against mpmath ------------------------------------------------------

@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_reference_vjp_matches_mpmath(op, data):
    """GRAD-2 .. GRAD-5: every gradient of the reference is within its written bound of
    the derivative of the forward, computed independently in mpmath."""
    case = data.draw(_cases(op), label="case")
    gradient, steps = case.reference()
    exact, noise = _exact_vjp(case)
    bounds = tolerance.reference_vjp_bounds(steps, case.dy, case.expanded(case.weight), slice_ids=case.ids,
                                            parameter_axes=case.parameter_axes, frozen=case.frozen)
    for name in ("x", "weight", "bias"):
        _assert_within(name, gradient[name], exact[name], bounds[name] + noise[name], f"{op} reference vs mpmath:")


# --- the laws of GRAD-2 to GRAD-4, on larger inputs ------------------------------------

def _grouped_fsum(values, groups):
    """math.fsum of `values` within each group id (0 .. G-1), in group order."""
    values, groups = np.ravel(values), np.ravel(groups)
    order = np.argsort(groups, kind="stable")
    cuts = np.flatnonzero(np.diff(groups[order])) + 1
    return np.array([math.fsum(part) for part in np.split(values[order], cuts)])


def _grouped_dot(a, a_error, b, b_error, groups):
    """sum(a b) within each group, and the error allowed for it (tolerance.reference_dot_bound)."""
    a, a_error, b, b_error = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, a_error, b, b_error)))
    allowed = tolerance.reference_dot_bound(a[..., None], a_error[..., None], b[..., None], b_error[..., None], axis=-1)
    return _grouped_fsum(a * b, groups), _grouped_fsum(allowed, groups)


@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_reference_vjp_laws(op, data):
    """GRAD-2: dbeta and dgamma are the sums of dy and dy x_hat; GRAD-3: dx sums to zero
    over each slice and, with eps = 0, is orthogonal to x_hat; GRAD-4: with eps = 0, dx
    is orthogonal to x. Each law within the reference's bound and the exact sum's rounding."""
    case = data.draw(_cases(op, lambda **kw: shapes(**kw, min_reduction=2), eps_values=(0.0, 1e-5)), label="case")
    gradient, steps = case.reference()
    assume(case.eps > 0 or np.all(steps.variance > 0))  # eps = 0 and zero variance: outside GRAD-1 (NUM-3.3)
    bounds = tolerance.reference_vjp_bounds(steps, case.dy, case.expanded(case.weight), slice_ids=case.ids,
                                            parameter_axes=case.parameter_axes, frozen=case.frozen)
    index = case.parameter_index
    if case.bias is not None:
        expected, allowed = _grouped_dot(case.dy, 0.0, 1.0, 0.0, index)
        _assert_within("bias", gradient["bias"].ravel(), expected, bounds["bias"].ravel() + allowed, f"{op} GRAD-2:")
    if case.weight is not None:
        expected, allowed = _grouped_dot(case.dy, 0.0, steps.normalized, 0.0, index)
        _assert_within("weight", gradient["weight"].ravel(), expected, bounds["weight"].ravel() + allowed,
                       f"{op} GRAD-2:")
    if case.frozen:
        return
    dx, error = gradient["x"], bounds["x"]
    if OPS[op].centring:
        total, allowed = _grouped_dot(dx, error, 1.0, 0.0, case.ids)
        _assert_within("sum(dx)", total, 0.0, allowed, f"{op} GRAD-3:")
        if case.eps == 0:
            x_hat = steps.normalized
            dot, allowed = _grouped_dot(dx, error, x_hat, tolerance.reference_bound(x_hat, None, None), case.ids)
            _assert_within("sum(dx x_hat)", dot, 0.0, allowed, f"{op} GRAD-3:")
    elif case.eps == 0:
        dot, allowed = _grouped_dot(dx, error, case.x, 0.0, case.ids)
        _assert_within("sum(dx x)", dot, 0.0, allowed, f"{op} GRAD-4:")


# --- GRAD-1, GRAD-5, GRAD-7, GRAD-8 ------------------------------------------------------

def _fixed_case(op, dtype=np.float64, weight_dtype=np.float32, bias_dtype=ml_dtypes.bfloat16, frozen=False):
    rng = np.random.default_rng(7)
    shape, attrs = ((2, 3, 4), {"normalized_shape": (4,)}) if op in ("layer_norm", "rms_norm") else (
        ((2, 4, 3), {"num_groups": 2}) if op == "group_norm" else ((2, 3, 4), {}))
    parameter_shape = attrs.get("normalized_shape", (shape[1],))
    x, dy = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    weight = rng.standard_normal(parameter_shape).astype(weight_dtype)
    bias = rng.standard_normal(parameter_shape).astype(bias_dtype)
    running = (np.zeros(parameter_shape), np.ones(parameter_shape)) if frozen else (None, None)
    return Case(op, x, dy, weight, bias, attrs, 1, 1e-5, frozen, running)


@pytest.mark.parametrize("op", list(OPS))
def test_gradients_are_repeatable_and_complete(op):
    """GRAD-7.1: identical calls give identical bits; GRAD-7.2: every present parameter
    has a gradient of its shape, an absent one none."""
    case = _fixed_case(op)
    first, second = case.reference(exact=False)[0], case.reference(exact=False)[0]
    for name in ("x", "weight", "bias"):
        np.testing.assert_array_equal(first[name], second[name])
        assert first[name].shape == {"x": case.x, "weight": case.weight, "bias": case.bias}[name].shape
        assert np.any(first[name] != 0)
    case.weight = case.bias = None
    assert case.reference()[0]["weight"] is None and case.reference()[0]["bias"] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(OPS))
def test_gradient_dtypes(op, dtype):
    """GRAD-8.2: dx in the input dtype, dgamma and dbeta in their parameters' dtypes,
    each the float64 value rounded once."""
    case = _fixed_case(op, numpy_dtype(dtype))
    rounded, exact = case.reference(exact=False)[0], case.reference(exact=True)[0]
    for name, dtype_of in (("x", case.x.dtype), ("weight", case.weight.dtype), ("bias", case.bias.dtype)):
        assert rounded[name].dtype == dtype_of, name
        np.testing.assert_array_equal(rounded[name], exact[name].astype(dtype_of))


@pytest.mark.parametrize("op", FROZEN_MODES)
def test_frozen_statistics_gradient_is_elementwise(op):
    """GRAD-5: with running statistics dx = gamma r dy, one element at a time."""
    case = _fixed_case(op, weight_dtype=np.float64, bias_dtype=np.float64, frozen=True)
    case.running = (np.array([0.5, -1.0, 2.0]), np.array([0.25, 4.0, 1.0]))
    dx = case.reference()[0]["x"]
    expected = case.expanded(case.weight) * case.dy / np.sqrt(case.expanded(case.running[1]) + case.eps)
    _assert_within("x", dx, expected, tolerance.reference_vjp_bounds(
        case.reference()[1], case.dy, case.expanded(case.weight), slice_ids=case.ids,
        parameter_axes=case.parameter_axes, frozen=True)["x"], f"{op} GRAD-5:")


def test_single_value_channel_has_zero_input_gradient():
    """GRAD-3 with n = 1 (BN-5.1): dx = 0; under the unbiased profile the call is rejected (BN-5.2)."""
    x, dy = np.array([[0.5, -1.25]]), np.array([[3.0, -2.0]])
    gradient = reference.batch_norm_vjp(x, dy, np.array([2.0, 1.0]), None, training=True, eps=1e-5,
                                        running_var_estimator="biased")
    np.testing.assert_array_equal(gradient["x"], [[0.0, 0.0]])
    np.testing.assert_array_equal(gradient["weight"], [0.0, 0.0])
    with pytest.raises(ConfigurationError, match=r"^\[BN-5.2\]"):
        reference.batch_norm_vjp(x, dy, training=True, eps=1e-5)


@pytest.mark.parametrize("dy,clause", [(np.ones((2, 4)), "GRAD-1"), (np.ones((2, 3), dtype=np.int64), "ERR-1.1")])
def test_cotangent_is_checked(dy, clause):
    """GRAD-1: dy has the shape of the output, and a supported dtype."""
    with pytest.raises(ConfigurationError, match=rf"^\[{clause}\]"):
        reference.layer_norm_vjp(np.ones((2, 3)), dy, (3,), eps=1e-5)


# --- the spec's worked example, and the GRAD citations ---------------------------------

def test_worked_example_matches_reference():
    """The gradients printed in spec/gradients.md are what the reference computes."""
    text = files("normspec.spec").joinpath("gradients.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```normspec-vjp-example\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks
    for example in map(tomllib.loads, blocks):
        gradient = VJP[example["op"]](np.array(example["x"]), np.array(example["dy"]), example["normalized_shape"],
                                      np.array(example["weight"]), np.array(example["bias"]), eps=example["eps"],
                                      exact=True)
        np.testing.assert_allclose(gradient["x"], example["dx"], rtol=5e-9, atol=5e-10)
        np.testing.assert_allclose(gradient["weight"], example["dweight"], rtol=5e-9, atol=5e-10)
        np.testing.assert_allclose(gradient["bias"], example["dbias"], rtol=5e-9, atol=5e-10)


def test_every_cited_grad_clause_exists():
    """tests/test_spec.py checks the citations of the other prefixes; this checks GRAD."""
    cited = set()
    for folder in ("src", "reference", "adapters", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".toml") and path.is_file():
                cited |= set(re.findall(r"\bGRAD-[0-9]+(?:\.[0-9]+)*\b", path.read_text(encoding="utf-8")))
    assert cited and not sorted(cited - set(clauses.index()))


# --- torch.autograd in float64, held to GRAD-6 ------------------------------------------

_TORCH_CASES = [
    ("batch_norm", (3, 4, 5), {}, 1, False), ("batch_norm", (4, 6, 3), {}, -1, False),
    ("batch_norm", (3, 4, 5), {}, 1, True), ("layer_norm", (3, 4, 6), {"normalized_shape": (4, 6)}, 1, False),
    ("group_norm", (2, 6, 7), {"num_groups": 3}, 1, False), ("group_norm", (2, 5, 6), {"num_groups": 2}, -1, False),
    ("instance_norm", (2, 3, 9), {}, 1, False), ("instance_norm", (2, 3, 9), {}, 1, True),
    ("rms_norm", (3, 2, 8), {"normalized_shape": (8,)}, 1, False),
]


def _torch_vjp(case: Case):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    leaf = lambda a: None if a is None else torch.tensor(a, requires_grad=True)  # noqa: E731
    x, weight, bias = leaf(case.x), leaf(case.weight), leaf(case.bias)
    running = [None if r is None else torch.tensor(r) for r in case.running]
    moved = torch.movedim(x, case.channel_axis, 1) if OPS[case.op].has_channel_axis else x
    if case.op == "batch_norm":
        y = functional.batch_norm(moved, *running, weight, bias, not case.frozen, 0.1, case.eps)
    elif case.op == "instance_norm":
        y = functional.instance_norm(moved, *running, weight, bias, not case.frozen, 0.1, case.eps)
    elif case.op == "group_norm":
        y = functional.group_norm(moved, case.attrs["num_groups"], weight, bias, case.eps)
    elif case.op == "layer_norm":
        y = functional.layer_norm(x, case.attrs["normalized_shape"], weight, bias, case.eps)
    else:
        y = functional.rms_norm(x, case.attrs["normalized_shape"], weight, case.eps) + bias
    y = torch.movedim(y, 1, case.channel_axis) if OPS[case.op].has_channel_axis else y
    y.backward(torch.tensor(case.dy))
    return {"x": x.grad.numpy(), "weight": weight.grad.numpy(), "bias": bias.grad.numpy()}


@pytest.mark.parametrize("op,shape,attrs,channel_axis,frozen", _TORCH_CASES)
def test_torch_autograd_float64_meets_grad6(op, shape, attrs, channel_axis, frozen):
    """An independent implementation: PyTorch's backward kernels in float64 are within the
    GRAD-6 bound of the reference (plus the reference's own bound)."""
    rng = np.random.default_rng(11)
    x = 1e3 + rng.standard_normal(shape)  # a common offset: kappa ~ 1e3
    parameter_shape = attrs.get("normalized_shape", (shape[channel_axis],))
    running = (rng.standard_normal(parameter_shape), 0.5 + rng.random(parameter_shape)) if frozen else (None, None)
    if frozen:
        running = (running[0] + 1e3, running[1])
    case = Case(op, x, rng.standard_normal(shape), rng.standard_normal(parameter_shape),
                rng.standard_normal(parameter_shape), attrs, channel_axis, 1e-5, frozen, running)
    computed = _torch_vjp(case)
    gradient, steps = case.reference()
    arguments = dict(slice_ids=case.ids, parameter_axes=case.parameter_axes, frozen=frozen)
    allowed = tolerance.vjp_bounds(steps, case.dy, case.expanded(case.weight), gradient, input_dtype=np.float64,
                                   **arguments)
    own = tolerance.reference_vjp_bounds(steps, case.dy, case.expanded(case.weight), **arguments)
    for name in ("x", "weight", "bias"):
        _assert_within(name, computed[name], gradient[name], allowed[name] + own[name], f"{op} torch float64:")
