"""Paired bootstrap: reproducible with a fixed seed, and its 95% CI covers the true difference."""
import numpy as np
import pytest

from alr.report.stats import paired_bootstrap


def _synthetic(rng, n=150, p_a=0.6, p_b=0.5):
    """Two methods on the same items, correlated through a per-item difficulty."""
    difficulty = rng.normal(size=n)
    a = (rng.normal(size=n) + difficulty < np.quantile(difficulty, p_a) + 0.3).astype(float)
    b = (rng.normal(size=n) + difficulty < np.quantile(difficulty, p_b) + 0.3).astype(float)
    ids = [str(i) for i in range(n)]
    return {"t": (ids, a)}, {"t": (ids, b)}


def test_bootstrap_is_reproducible():
    a, b = _synthetic(np.random.default_rng(0))
    assert paired_bootstrap(a, b, 1000, seed=3) == paired_bootstrap(a, b, 1000, seed=3)
    assert paired_bootstrap(a, b, 1000, seed=3) != paired_bootstrap(a, b, 1000, seed=4)


def test_bootstrap_ci_covers_the_true_difference():
    """Items drawn from a known population: the CI covers the population difference ~95% of the time."""
    rng = np.random.default_rng(1)
    population = 200_000
    pa, pb = _synthetic(rng, n=population)
    true = float(pa["t"][1].mean() - pb["t"][1].mean())
    covered, trials = 0, 200
    for k in range(trials):
        idx = rng.integers(0, population, size=150)
        a = {"t": ([str(i) for i in range(150)], pa["t"][1][idx])}
        b = {"t": ([str(i) for i in range(150)], pb["t"][1][idx])}
        ci = paired_bootstrap(a, b, 500, seed=k)
        covered += ci["lo"] <= true <= ci["hi"]
    assert 0.88 <= covered / trials <= 0.99, covered / trials


def test_bootstrap_averages_tasks_and_refuses_unpaired_items():
    a = {"x": (["1", "2"], np.array([1.0, 1.0])), "y": (["3", "4"], np.array([0.0, 0.0]))}
    b = {"x": (["1", "2"], np.array([0.0, 0.0])), "y": (["3", "4"], np.array([0.0, 0.0]))}
    assert paired_bootstrap(a, b, 200)["diff"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different items"):
        paired_bootstrap(a, {"x": (["1", "9"], np.zeros(2)), "y": b["y"]}, 200)
