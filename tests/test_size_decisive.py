"""The sizing tool's variance components and MDE (tools/size_decisive.py): recovered from a simulated pilot."""

import numpy as np
import pytest

from tools.size_decisive import components, mde


def test_components_recover_the_simulated_variances():
    """D = delta + seed + item + noise with known variances: the two-way decomposition finds them."""
    rng = np.random.default_rng(0)
    seeds, items = 200, 400
    d = (
        0.05
        + rng.normal(scale=0.02, size=(seeds, 1))
        + rng.normal(scale=0.1, size=(1, items))
        + rng.normal(scale=0.05, size=(seeds, items))
    )
    seed, item, noise = components(d)
    assert seed == pytest.approx(0.02**2, rel=0.25)
    assert item == pytest.approx(0.1**2, rel=0.15)
    assert noise == pytest.approx(0.05**2, rel=0.05)


def test_mde_falls_with_seeds_and_is_the_normal_one_with_many_of_both():
    parts = (1e-4, 1e-2, 1e-3)
    assert mde(parts, 5, 90, 0.025) < mde(parts, 3, 90, 0.025)
    se = np.sqrt(1e-4 / 10_000 + 1e-2 / 10_000 + 1e-3 / 10_000**2)
    assert mde(parts, 10_000, 10_000, 0.025) == pytest.approx((1.959964 + 0.841621) * se, rel=1e-3)
