"""Paired statistics: the bootstrap is reproducible and its 95% CI covers a known difference at about
its nominal rate, with item and with seed variance; the sign test's p-value equals the binomial sum
written out here; Holm's adjustment equals a hand computation."""
import math

import numpy as np
import pytest

from alr.report.stats import holm, paired_bootstrap, sign_test


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


def test_two_level_bootstrap_covers_a_difference_with_seed_variance():
    """Each "training run" shifts every item's log-odds by a seed effect (sd 0.5), so the score of one
    run varies beyond item sampling. Five seeds per method, 120 items drawn from a population; the
    estimand is the population difference averaged over the seed distribution. The two-level CI covers
    it at close to 95%; the old one (seed-averaged items, item bootstrap only) covers it far less."""
    rng = np.random.default_rng(7)
    population, n_items, n_seeds, trials = 100_000, 120, 5, 150
    difficulty = rng.normal(size=population)

    def runs(shift, n):  # [n seeds x population] correctness
        effects = rng.normal(scale=0.5, size=(n, 1))
        p = 1 / (1 + np.exp(-(shift - difficulty + effects)))
        return (rng.random((n, population)) < p).astype(float)

    draws = np.arange(4000)  # the estimand: many seeds of each method
    x = rng.normal(scale=0.5, size=(2, draws.size, 1))
    truth = float(np.mean(1 / (1 + np.exp(-(0.3 - difficulty[:2000] + x[0])))) -
                  np.mean(1 / (1 + np.exp(-(0.0 - difficulty[:2000] + x[1])))))
    covered = {"two-level": 0, "items only": 0}
    for k in range(trials):
        items = rng.choice(population, n_items, replace=False)
        a, b = runs(0.3, n_seeds)[:, items], runs(0.0, n_seeds)[:, items]
        ids = [str(i) for i in range(n_items)]
        two = paired_bootstrap({"t": (ids, a)}, {"t": (ids, b)}, 400, seed=k)
        old = paired_bootstrap({"t": (ids, a.mean(axis=0))}, {"t": (ids, b.mean(axis=0))}, 400, seed=k)
        covered["two-level"] += two["lo"] <= truth <= two["hi"]
        covered["items only"] += old["lo"] <= truth <= old["hi"]
    rate = {k: v / trials for k, v in covered.items()}
    assert 0.86 <= rate["two-level"] <= 0.99, rate
    assert rate["items only"] < rate["two-level"] - 0.1, rate


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair trials, summed term by term."""
    probs = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    return min(1.0, sum(q for q in probs if q <= probs[k] * (1 + 1e-12)))


@pytest.mark.parametrize("better, worse", [(4, 0), (7, 2), (3, 3), (0, 0), (12, 30)])
def test_sign_test_equals_the_binomial_reference(better, worse):
    """With one seed: McNemar's exact test on the discordant items (ties and agreements dropped)."""
    a = [1.0] * better + [0.0] * worse + [1.0, 0.0, 1.0]
    b = [0.0] * better + [1.0] * worse + [1.0, 0.0, 1.0]
    ids = [str(i) for i in range(len(a))]
    got = sign_test({"t": (ids, np.array(a))}, {"t": (ids, np.array(b))})
    assert (got["better"], got["worse"]) == (better, worse)
    expected = _binomial_two_sided(better, better + worse) if better + worse else 1.0
    assert got["p"] == pytest.approx(expected, rel=1e-9)
    if (better, worse) == (4, 0):
        assert got["p"] == pytest.approx(0.125)  # 4 of 4 flipped: not significant at 0.05


def test_sign_test_uses_seed_means_per_item():
    ids = ["1", "2", "3"]
    a = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=float)  # seed means 1, 2/3, 0
    b = np.array([[0, 1, 0], [0, 1, 1], [0, 1, 0]], dtype=float)  # seed means 0, 1, 1/3
    assert sign_test({"t": (ids, a)}, {"t": (ids, b)}) == {"better": 1, "worse": 2, "p": 1.0}


def test_holm_matches_a_hand_computation():
    """p sorted 0.01, 0.02, 0.04, 0.5 of 4: 0.04, 0.06, 0.08, 0.5 (monotone), NaN not counted."""
    assert holm([0.04, math.nan, 0.01, 0.5, 0.02]) == pytest.approx([0.08, math.nan, 0.04, 0.5, 0.06], nan_ok=True)
    assert holm([0.3, 0.2]) == pytest.approx([0.4, 0.4])  # step-down keeps the order monotone


def test_chance_tail_is_the_exact_poisson_binomial_tail():
    from math import comb

    from alr.report.general_tasks import chance_tail

    # equal chances: the binomial tail
    assert chance_tail([0.25] * 10, 4) == pytest.approx(sum(comb(10, k) * 0.25**k * 0.75**(10 - k) for k in range(4, 11)))
    # mixed chances, by enumeration of all outcomes
    chances = [0.5, 0.25, 0.2]
    outcomes = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    prob = {o: np.prod([p if x else 1 - p for x, p in zip(o, chances)]) for o in outcomes}
    assert chance_tail(chances, 2) == pytest.approx(sum(v for o, v in prob.items() if sum(o) >= 2))
    assert chance_tail(chances, 0) == pytest.approx(1.0)
