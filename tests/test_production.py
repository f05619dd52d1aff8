"""The production table (normspec.production) holds what issue 25 promises, within the size
that keeps the float64 reference cheap, and its cases give every slice statistics of its own."""
import numpy as np
import pytest

from normspec import production
from normspec.registry import OPS, slice_ids
from normspec.shape_pool import reduction_length


class _Layout:
    """A stand-in adapter: the layout and capabilities production.case reads."""

    def __init__(self, channel_axis, training=True):
        self.conventions = type("C", (), {"channel_axis": channel_axis})()
        self.capabilities = type("K", (), {"batch_norm_training": training})()


def test_the_table_holds_the_promised_configurations():
    rows = {reduction_length("layer_norm", s, a, 1) for s, a in production.TABLE["layer_norm"].values()}
    assert {768, 1024, 4096, 5120, 8192} <= rows and any(n > 10_000 and n & (n - 1) for n in rows), sorted(rows)
    for op in ("layer_norm", "rms_norm"):
        assert any(len(a["normalized_shape"]) == len(s) - 1 >= 3 for s, a in production.TABLE[op].values())
    # a long row that no vector width (2 to 16 elements) divides: a dropped tail shows
    assert any(n > 1024 and all(n % w for w in (2, 4, 8, 16)) for n in rows), sorted(rows)
    groups = [(a["num_groups"], s[1]) for s, a in production.TABLE["group_norm"].values()]
    assert any(g > 32 for g, _ in groups) and any(g == c > 64 for g, c in groups) and max(c for _, c in groups) == 512
    group_lengths = [reduction_length("group_norm", s, a, 1) for s, a in production.TABLE["group_norm"].values()]
    assert max(group_lengths) >= 8192, group_lengths  # more than one block of a one-pass group load
    for op in ("batch_norm", "instance_norm"):
        shapes = [s for s, _ in production.TABLE[op].values()]
        assert any(s[1] > 64 for s in shapes) and any(s[1] == 512 for s in shapes)
        assert any(s[2:] == (56, 56) for s in shapes)
    for op, names in production.BACKWARD.items():  # the backward pass runs on configurations of the table
        assert names and set(names) <= set(production.TABLE[op]), (op, names)
    for op, table in production.TABLE.items():
        for name, (shape, attrs) in table.items():
            assert int(np.prod(shape)) <= 310_000, f"{op} {name}: {shape} is too large for a cheap reference"
            assert OPS[op].ranks[0] <= len(shape) <= OPS[op].ranks[1], (op, name, shape)


def test_a_vjp_case_is_the_first_call_with_a_cotangent_of_its_shape():
    for op, names in production.BACKWARD.items():
        for dtype, param_dtype in (("float32", None), ("bfloat16", "float32"), ("float16", None)):
            case = production.vjp_case(_Layout(1), op=op, dtype=dtype, name=names[0], recipe="distinct_slices",
                                       param_dtype=param_dtype)
            assert case.training == [True] and len(case.inputs) == 1
            assert case.cotangent.shape == case.shape and case.cotangent.dtype == case.inputs[0].dtype
            assert case.parameter_dtype == (param_dtype or dtype)
            # a common offset only where the parameter gradients are float32 or float64 (no float16 overflow)
            offset = abs(float(case.cotangent.astype(np.float64).mean()))
            assert (offset > 5) == (dtype == "float32" or param_dtype == "float32"), (op, dtype, offset)


@pytest.mark.parametrize("recipe", production.RECIPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("op, name", [(op, name) for op in production.TABLE for name in production.names(op)])
def test_every_slice_has_statistics_of_its_own(op, name, channel_axis, recipe):
    """Neighbouring slices' means differ by more than their spreads' sum over 2^7, so that an
    element normalized with another slice's statistics is far off; BatchNorm's loaded running
    statistics are its channels' own, moved so that a training step changes them."""
    adapter = _Layout(channel_axis)
    case = production.case(adapter, op=op, dtype="float32", name=name, recipe=recipe)
    shape, attrs = case.shape, case.attrs
    assert shape == production.layout(op, production.TABLE[op][name][0], channel_axis)
    ids = slice_ids(op, shape, attrs, channel_axis).ravel()
    x = case.inputs[0].astype(np.float64).ravel()
    counts = np.bincount(ids)
    means = np.bincount(ids, x) / counts
    spreads = np.sqrt(np.maximum(np.bincount(ids, x * x) / counts - means**2, 0))
    if len(means) > 1:
        gaps = np.abs(np.diff(means))
        assert (gaps > (spreads[1:] + spreads[:-1]) / 2**7).mean() > 0.9, (op, name, recipe)
    if op == "batch_norm":
        assert case.training == [True, False]
        np.testing.assert_allclose(case.params["running_mean"], (means + spreads / 2).astype(np.float32),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(case.params["running_var"], (2 * spreads**2).astype(np.float32), rtol=1e-5)
        assert production.case(_Layout(channel_axis, training=False), op=op, dtype="float32", name=name,
                               recipe=recipe).training == [False]
