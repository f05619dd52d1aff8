"""Figures of normspec.accuracy's points, drawn with matplotlib (PNG): the error over the bound of
NUM-1.1 against kappa and against n, per op and dtype, and the comparison of several
implementations on one op and dtype (why the one-pass variance fails and the two-pass one does not)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

_FLOOR, _CEILING = 1e-8, 1e6  # ratios shown on the log axis: exact results at the floor, NaN/Inf at the ceiling
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _shown(ratios):
    ratios = np.asarray(ratios, dtype=float)
    return np.clip(np.where(np.isfinite(ratios), ratios, _CEILING), _FLOOR, _CEILING)


def _bound_line(axis, x_label: str):
    axis.axhline(1.0, color="black", linewidth=1.2)
    axis.axhspan(1.0, _CEILING * 10, color="#d62728", alpha=0.08, linewidth=0)
    axis.set_yscale("log")
    axis.set_xscale("log")
    axis.set_ylim(_FLOOR / 2, _CEILING * 2)
    axis.set_xlabel(x_label)
    axis.grid(True, which="major", alpha=0.3)


def _series(points, sweep, key):
    groups = {}
    for p in points:
        if p.sweep == sweep and np.isfinite(p.kappa if sweep == "kappa" else p.n) and not p.error:
            groups.setdefault(key(p), []).append(p)
    return {name: sorted(ps, key=lambda p: p.kappa if sweep == "kappa" else p.n) for name, ps in groups.items()}


def comparison(points, op: str, dtype: str, path, labels: dict | None = None) -> Path:
    """One figure, two panels: error / bound against kappa (at the fixed n) and against n (at the
    fixed kappa), one line per implementation, for `op` in `dtype`."""
    plt = _pyplot()
    labels = labels or {}
    chosen = [p for p in points if p.op == op and p.dtype == dtype]
    figure, axes = plt.subplots(1, 2, figsize=(12, 6), sharey=True, constrained_layout=True)
    for axis, sweep, label in ((axes[0], "kappa", "conditioning κ of the slice (NUM-1.2)"),
                               (axes[1], "n", "reduction length n of the slice")):
        _bound_line(axis, label)
        for colour, (target, series) in zip(_COLOURS, _series(chosen, sweep, lambda p: p.target).items()):
            xs = [p.kappa if sweep == "kappa" else p.n for p in series]
            axis.plot(xs, _shown([p.ratio for p in series]), marker="o", markersize=4, color=colour,
                      label=labels.get(target, target))
        axis.text(0.02, 0.97, "violates NUM-1.1", transform=axis.transAxes, va="top", color="#b22222", fontsize=10)
    fixed_n = next((p.n for p in chosen if p.sweep == "kappa"), None)
    fixed_kappa = next((p.kappa for p in chosen if p.sweep == "n"), None)
    axes[0].set_title(f"against κ, n = {fixed_n}")
    axes[1].set_title(f"against n, κ ≈ {fixed_kappa:.0f}" if fixed_kappa else "against n")
    axes[0].set_ylabel("worst |computed − exact| / NUM-1.1 bound")
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    figure.suptitle(f"{op}, {dtype}: error over the NUM-1.1 bound (above 1: non-conforming)", fontsize=13)
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def per_op(points, target: str, sweep: str, path) -> Path:
    """One panel per op: error / bound of one implementation against kappa or n, one line per dtype."""
    plt = _pyplot()
    mine = [p for p in points if p.target == target]
    ops = list(dict.fromkeys(p.op for p in mine if not (sweep == "kappa" and p.op == "rms_norm")))
    if not ops:
        raise ValueError(f"no points of {target} for the {sweep} sweep")
    figure, axes = plt.subplots(1, len(ops), figsize=(3.6 * len(ops) + 1, 4.2), sharey=True, squeeze=False,
                                constrained_layout=True)
    for axis, op in zip(axes[0], ops):
        _bound_line(axis, "κ (NUM-1.2)" if sweep == "kappa" else "n")
        for colour, (dtype, series) in zip(_COLOURS, _series([p for p in mine if p.op == op], sweep,
                                                                lambda p: p.dtype).items()):
            xs = [p.kappa if sweep == "kappa" else p.n for p in series]
            axis.plot(xs, _shown([p.ratio for p in series]), marker="o", markersize=3, color=colour, label=dtype)
        axis.set_title(op)
        axis.text(0.03, 0.96, "violates NUM-1.1", transform=axis.transAxes, va="top", color="#b22222", fontsize=9)
    axes[0][0].set_ylabel("worst error / NUM-1.1 bound")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    what = "κ (n = 256)" if sweep == "kappa" else "n (κ ≈ 1000, less in half precision)"
    figure.suptitle(f"{target}: error over the NUM-1.1 bound against {what}", fontsize=12)
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# The implementations of the comparison figure on the site: correct algorithms and the one-pass mutant.
COMPARISON = {
    "numpy": "numpy: the reference (float64, rounded once)",
    "normspec.zoo.kernel:TwoPassKernel": "zoo-twopass: two-pass, in float32",
    "normspec.zoo.correct:WelfordKernel": "zoo-welford: Welford's updating algorithm, in float32",
    "normspec.zoo.correct:FusedKernel": "zoo-fused: one pass of sums, accumulated in float64",
    "normspec.zoo.mutants_numerics:OnePassVariance": "mutant-one-pass-variance: E[x²] − E[x]², in float32",
}


# Built-in adapters whose variance algorithm is the point of the comparison.
KNOWN = {
    "flax-linen": "flax-linen: use_fast_variance=True (the default), E[x²] − E[x]²",
    "flax-nnx": "flax-nnx: use_fast_variance=True (the default), E[x²] − E[x]²",
}


def draw(points, out, labels: dict | None = None, compare: tuple | None = None) -> list:
    """Every figure of `points` into the folder `out`: kappa-<id>.png and n-<id>.png per implementation,
    and why.png comparing them on `compare` = (op, dtype) (default the first op and dtype every
    implementation has, batch_norm and float32 first) when there are several."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    targets = list(dict.fromkeys(p.target for p in points))
    for target in targets:
        for sweep in ("kappa", "n"):
            try:
                drawn.append(per_op(points, target, sweep, out / f"{sweep}-{target}.png"))
            except ValueError:
                continue
    if len(targets) > 1:
        if compare is None:
            common = [(p.op, p.dtype) for p in points
                      if all(any(q.target == t and (q.op, q.dtype) == (p.op, p.dtype) for q in points)
                             for t in targets)]
            common = sorted(set(common), key=lambda od: (od[0] != "batch_norm", od[1] != "float32", od))
            compare = common[0] if common else None
        if compare is not None:
            drawn.append(comparison(points, *compare, out / "why.png", labels))
    return drawn
