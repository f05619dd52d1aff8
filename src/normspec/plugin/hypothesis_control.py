"""How the suite drives Hypothesis: its profiles, the ci profile's seed per test item, no
shrinking of expected failures, and no literals of local modules in the draws."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager

from hypothesis import HealthCheck, Phase, settings

PROFILES = {
    # Derandomized: the same examples every run, so a CI gate is reproducible.
    "ci": dict(max_examples=100, derandomize=True, database=None),
    "dev": dict(max_examples=20),
    "thorough": dict(max_examples=1000),
}
for _name, _options in PROFILES.items():
    # No "explain" phase and no @reproduce_failure blob: normspec's own message says where
    # the failure is and how to reproduce it, against the implementation, not the suite.
    settings.register_profile(f"normspec-{_name}", deadline=None, print_blob=False,
                              phases=[p for p in Phase if p is not Phase.explain],
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **_options)


def load_profile(profile: str, examples: int | None) -> None:
    """Make the profile (with `examples` per test, if given) Hypothesis's settings."""
    settings.load_profile(f"normspec-{profile}")
    without_local_constants()
    if examples:
        settings.register_profile("normspec-override", parent=settings.get_profile(f"normspec-{profile}"),
                                  max_examples=examples)
        settings.load_profile("normspec-override")


HYPOTHESIS_LOCAL_CONSTANTS = None


def without_local_constants() -> None:
    """Keep Hypothesis from mixing literals of "local" modules into its draws.

    Hypothesis (6.131 and later) draws some integers and floats from the literal constants
    in the source of every imported module outside site-packages (test files excepted).
    Which modules those are depends on how normspec is installed (editable or as a wheel)
    and on which adapters a run imports, so the same seed would draw other examples in a
    checkout than in CI. The code under test is the frameworks, in site-packages, so those
    constants carry no information about it. Hypothesis has no setting for this; its
    private hook is replaced where it exists (else nothing changes, and
    tests/test_gate.py says so)."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    global HYPOTHESIS_LOCAL_CONSTANTS
    if not hasattr(providers, "_get_local_constants") or not hasattr(providers, "Constants"):
        return
    if HYPOTHESIS_LOCAL_CONSTANTS is None:
        HYPOTHESIS_LOCAL_CONSTANTS = providers._get_local_constants  # Hypothesis's own (tests/test_gate.py)
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None:
        cache.cache.clear()


def example_seed(test_name: str, params: dict) -> int:
    """The ci profile's seed for one test item: from the test's name and its parameters,
    device excepted. The examples then do not depend on the path pytest was started from
    (Hypothesis's own derandomization hashes the node ID and the test's source), and CPU
    and CUDA runs draw the same examples."""
    params = {k: v for k, v in params.items() if k != "device"}
    key = "|".join([test_name] + [f"{k}={params[k]}" for k in sorted(params)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


@contextmanager
def item_settings(test, *, seed: int | None, shrink: bool):
    """Run the Hypothesis test function `test` with `seed` (None: Hypothesis's own) and,
    unless `shrink`, without its shrink phase: an expected failure only has to fail with its
    clause, and shrinking it would cost more than the rest of its run."""
    if seed is not None:
        test._hypothesis_internal_use_seed = seed
    own_settings = test._hypothesis_internal_use_settings
    if not shrink:
        test._hypothesis_internal_use_settings = settings(own_settings, phases=[
            p for p in own_settings.phases if p is not Phase.shrink])
    try:
        yield
    finally:
        test._hypothesis_internal_use_settings = own_settings
        if seed is not None:
            test._hypothesis_internal_use_seed = None
