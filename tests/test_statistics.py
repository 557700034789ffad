"""The statistical helpers against scipy and against distributions with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clbounds.figures import statistics as st


SIMS = 2000  # simulated nulls or samples per level and coverage check


def _two_se(p: float, sims: int = SIMS) -> float:
    return 2 * math.sqrt(p * (1 - p) / sims)


def test_percentile_bootstrap_of_a_median_covers_a_known_median():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 300
    for i in range(trials):
        x = rng.normal(1.0, 1.0, size=30)
        _, lo, hi = st.bootstrap_ci(x, n_boot=1000, seed=i)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / trials <= 0.985


def test_accuracy_interval_covers_over_seeds_and_test_inputs():
    """Seeds scatter the true accuracy (sd 0.02 around 0.8); each seed's accuracy is then a
    binomial draw over 200 test inputs. The two-level interval covers the grand mean."""
    rng = np.random.default_rng(1)
    hits, trials = 0, 300
    for i in range(trials):
        true = rng.normal(0.8, 0.02, size=5)
        acc = rng.binomial(200, np.clip(true, 0, 1)) / 200
        _, lo, hi = st.accuracy_ci(acc, 200, n_boot=1000, seed=i)
        hits += lo <= 0.8 <= hi
    assert hits / trials >= 0.85  # five seeds: the percentile bootstrap runs a little short


@pytest.mark.parametrize("n", [5, 10])
def test_the_t_interval_of_a_mean_over_seeds_covers_95_percent(n):
    """20,000 simulated seed sets of normal noise: the interval covers the mean at least 95%
    less two standard errors, where the plain percentile bootstrap of 5 covers about 83%. (At
    2,000 the check's own noise is ±0.005: one draw of 2,000 sets of 5 read 0.940; of 20,000,
    0.948 and 0.951 on two seeds.)"""
    rng = np.random.default_rng(7 + n)
    sims = 10 * SIMS  # an exact interval: the check's own error kept small
    samples = rng.normal(0.3, 0.02, size=(sims, n))
    covered = sum(lo <= 0.3 <= hi for _, lo, hi in (st.mean_ci(x) for x in samples))
    assert covered / sims >= 0.95 - _two_se(0.95, sims)
    if n == 5:
        boots = samples[:400][np.arange(400)[:, None, None], rng.integers(0, 5, size=(400, 1000, 5))].mean(-1)  # 1,000 resamples each
        plain = np.mean((np.quantile(boots, 0.025, axis=1) <= 0.3) & (0.3 <= np.quantile(boots, 0.975, axis=1)))
        assert plain < 0.88
    m, lo, hi = st.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert (hi - m) == pytest.approx(stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2)


def test_accuracy_interval_does_not_count_the_test_inputs_twice_when_each_seed_draws_its_own():
    acc = [0.80, 0.82, 0.79, 0.81, 0.80]
    assert st.accuracy_ci(acc, 200, split_per_seed=True) == st.mean_ci(acc)
    _, lo, hi = st.accuracy_ci(acc, 200, split_per_seed=False)
    _, lo2, hi2 = st.accuracy_ci(acc, 200, split_per_seed=True)
    assert hi - lo > hi2 - lo2  # the second draw widens the interval
    _, lo1, hi1 = st.accuracy_ci([0.8], 200, split_per_seed=True)  # one seed: the test inputs alone
    assert lo1 < 0.8 < hi1


@pytest.mark.parametrize("n", [5, 8, 12])
def test_exact_kendall_p_values_match_scipy(n):
    rng = np.random.default_rng(n)
    x, y = rng.permutation(n).astype(float), rng.permutation(n).astype(float)
    ours = st.kendall(x, y)
    ref = stats.kendalltau(x, y, method="exact")
    assert ours["method"] == "exact" and ours["tau"] == pytest.approx(ref.statistic) and ours["p"] == pytest.approx(ref.pvalue)
    lo, hi = ours["ci"]
    assert -1 <= lo <= hi <= 1


def test_kendall_with_ties_uses_the_normal_approximation():
    x, y = [1, 1, 2, 3, 4, 5, 6], [2, 1, 3, 3, 5, 4, 7]
    ours = st.kendall(x, y)
    assert ours["method"] == "asymptotic" and ours["p"] == pytest.approx(stats.kendalltau(x, y).pvalue)
    assert math.isnan(st.kendall([1, 2], [3, 4])["tau"]) and math.isnan(st.kendall([1, 1, 1], [1, 2, 3])["tau"])


def test_holm_against_a_hand_computation():
    # p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert st.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert st.holm([0.5, None, 0.6]) == [1.0, None, 1.0] or st.holm([0.5, None, 0.6]) == pytest.approx([1.0, None, 1.0])
    assert st.holm([]) == []


def test_paired_test_decides_by_the_exact_sign_flip_test_with_the_t_test_beside_it():
    a, b = [0.9, 0.8, 0.85, 0.95, 0.9], [0.7, 0.65, 0.7, 0.8, 0.72]
    r = st.paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert r["t"] == pytest.approx(ref.statistic) and r["p_t"] == pytest.approx(ref.pvalue)  # the labelled secondary
    assert r["p_greater_t"] == pytest.approx(ref.pvalue / 2) and r["d_z"] == pytest.approx(np.mean(np.subtract(a, b)) / np.std(np.subtract(a, b), ddof=1))
    assert r["test"].startswith("exact sign-flip") and r["p_greater"] == 1 / 32 and r["p_floor"] == 1 / 32  # five of one sign
    assert st.paired_test([1.0], [0.5])["p"] is None


def test_sign_flip_p_values_against_a_brute_force_enumeration():
    import itertools

    rng = np.random.default_rng(11)
    for d in ([0.3, -0.1, 0.2, 0.2, -0.05, 0.4], list(rng.normal(0.1, 1.0, size=7)), [0.5, 0.0, -0.5, 0.25]):
        nz = [v for v in d if v != 0]
        null = [sum(s * abs(v) for s, v in zip(signs, nz)) for signs in itertools.product([-1, 1], repeat=len(nz))]
        obs = sum(nz)
        r = st.sign_flip_test(d)
        assert r["p_greater"] == pytest.approx(np.mean([v >= obs - 1e-12 for v in null]))
        assert r["p_less"] == pytest.approx(np.mean([v <= obs + 1e-12 for v in null]))
    big = st.sign_flip_test(rng.normal(0.5, 1.0, size=40))  # beyond the exact limit: random patterns with the +1 correction
    assert big["method"].startswith("sign-flip permutation") and 0 < big["p_greater"] < 0.05


@pytest.mark.parametrize("n", [5, 10])
@pytest.mark.parametrize("law", ["normal", "skewed magnitudes", "heavy tails"])
def test_the_sign_flip_test_holds_its_level_under_exchangeable_nulls(n, law):
    """2,000 simulated nulls of n seeds each: the two variants' labels are exchangeable within a
    seed (the difference is as likely + as −), its magnitude normal, log-normal (skewed) or
    Student t with 2 degrees of freedom. Each one-sided test rejects at most 5% + two standard errors."""
    rng = np.random.default_rng(100 * n + len(law))
    size = (SIMS, n)
    magnitude = {"normal": np.abs(rng.normal(size=size)), "skewed magnitudes": rng.lognormal(0, 1.5, size=size),
                 "heavy tails": np.abs(rng.standard_t(2, size=size))}[law]
    d = magnitude * rng.choice([-1.0, 1.0], size=size)
    for direction in ("p_greater", "p_less"):
        rejected = np.mean([st.sign_flip_test(row)[direction] < st.ALPHA for row in d])
        assert rejected <= st.ALPHA + _two_se(st.ALPHA), (law, n, direction, rejected)


def test_holm_over_a_family_of_claims_holds_the_family_wise_level():
    """2,000 simulated targets of 4 claims on 8 seeds, every claim null (differences symmetric
    about 0, skewed magnitudes): the chance that any claim is called reproduced or contradicted
    stays at 5% + two standard errors. At 5 seeds no claim of 4 can pass Holm's first step,
    and the verdict says so with the seeds that would."""
    rng = np.random.default_rng(5)
    errors = 0
    for _ in range(SIMS):
        base = rng.normal(size=(4, 8))
        d = rng.lognormal(0, 1.0, size=(4, 8)) * rng.choice([-1.0, 1.0], size=(4, 8))
        family = st.adjust([st.compare(base[i] + d[i], base[i], "greater") for i in range(4)])
        errors += any(c["verdict"] in ("reproduced", "contradicted") for c in family)
    assert errors / SIMS <= st.ALPHA + _two_se(st.ALPHA)
    strong = [st.compare([1.0 + i for i in range(5)], [0.0 + i for i in range(5)]) for _ in range(4)]
    verdicts = [c["verdict"] for c in st.adjust(strong)]
    assert all(v.startswith("not resolvable at 5 seeds") and "8 seeds needed" in v for v in verdicts), verdicts  # 8 one-sided tests
    assert st.seeds_needed(0.05 / 8) == 8 and all(math.isinf(c["mdd"]) for c in st.adjust(strong))


def test_differences_without_spread_get_the_exact_tests_smallest_p_value():
    """A constant shift on every seed (or one that differs only by rounding) is the strongest
    paired evidence: the sign-flip test gives 2^-n, never "undefined" nor a rounding artefact,
    and the t-test, which would divide 0 by 0, is left out."""
    a = [0.3, 0.5, 0.7, 0.2, 0.9]
    for b in ([v - 0.1 for v in a], [v - 0.1 + 1e-17 * i for i, v in enumerate(a)]):
        r = st.paired_test(a, b)
        assert "sign-flip" in r["test"] and r["p_greater"] == pytest.approx(1 / 32) and r["p_less"] == pytest.approx(1.0) and r["p_t"] is None
    assert st.paired_test([1, 2], [1, 2])["p_greater"] == 1.0  # no difference at all


def test_stratified_kendall_is_scipys_exact_test_on_one_stratum_and_pools_seeds():
    rng = np.random.default_rng(8)
    for n in (4, 6, 9):
        x, y = rng.normal(size=n), rng.normal(size=n)
        r = st.stratified_kendall([(x, y)])
        for alt in ("greater", "less"):
            assert r[f"p_{alt}"] == pytest.approx(stats.kendalltau(x, y, method="exact", alternative=alt).pvalue)
    # five seeds that all order 5 settings perfectly: p = (1/120)^5, where a t-test over the
    # per-seed tau has no spread and cannot decide
    r = st.stratified_kendall([([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])] * 5)
    assert r["method"] == "exact" and r["p_greater"] == pytest.approx((1 / 120) ** 5)
    # a brute force over every permutation of two strata of 4
    import itertools

    strata = [([1, 2, 3, 4], [2, 1, 4, 3]), ([1, 2, 3, 4], [1, 3, 2, 4])]
    s_obs = sum(st._kendall_s(np.array(a, float), np.array(b, float)) for a, b in strata)
    perms = list(itertools.permutations(range(4)))
    null = [st._kendall_s(np.arange(4.0), np.array(p, float)) + st._kendall_s(np.arange(4.0), np.array(q, float)) for p in perms for q in perms]
    assert st.stratified_kendall(strata)["p_greater"] == pytest.approx(np.mean([v >= s_obs for v in null]))
    # ties: a permutation test within strata, close to the exact answer of the untied case
    tied = st.stratified_kendall([([1, 2, 3, 4, 5], [1, 2, 2, 4, 5])] * 3)
    assert tied["method"].startswith("permutation") and tied["p_greater"] < 0.001


def test_three_way_verdict_on_fabricated_data_with_a_known_effect():
    rng = np.random.default_rng(3)
    base = rng.normal(0.8, 0.03, size=8)  # per-seed difficulty, shared by both variants (paired)
    better = base + 0.05 + rng.normal(0, 0.005, size=8)
    assert st.compare(better, base, "greater")["verdict"] == "reproduced"
    assert st.compare(base, better, "greater")["verdict"] == "contradicted"
    noisy = base + rng.normal(0, 0.05, size=8)
    r = st.compare(noisy, base, "greater")
    assert r["verdict"] == "not resolved at 8 seeds" and r["mdd"] > 0.03  # the design could only have seen a larger effect
    # Holm over a family: a borderline p does not survive correction
    fam = st.adjust([dict(st.compare(better, base)), {"n": 8, "p_claimed": 0.03, "p_opposite": 0.97}])
    assert fam[0]["verdict"] == "reproduced" and fam[1]["verdict"] == "not resolved at 8 seeds"
    # the detectable difference is quoted at Holm's first-step level: alpha over the 4 tests
    assert fam[0]["holm_tests"] == 4
    assert fam[0]["mdd"] == pytest.approx(st.minimum_detectable_difference(fam[0]["sd_difference"], 8, 0.05 / 4))
    assert fam[0]["mdd"] > st.compare(better, base)["mdd"]


def test_minimum_detectable_difference_has_the_stated_power():
    """Simulated paired differences with mean equal to the MDD are detected about 80% of the time."""
    rng = np.random.default_rng(4)
    n, sd = 6, 1.0
    mdd = st.minimum_detectable_difference(sd, n)
    hits = sum(stats.ttest_1samp(rng.normal(mdd, sd, size=n), 0, alternative="greater").pvalue < 0.05 for _ in range(2000))
    assert 0.75 <= hits / 2000 <= 0.85


def test_partial_kendall_against_the_formula_and_when_the_loss_explains_everything():
    x, y, z = [3, 1, 4, 1.5, 5, 9, 2.6], [2, 7, 1, 8, 2.8, 1.8, 2.9], [1, 4, 1.4, 2.1, 3.5, 6, 2.2]
    t = lambda u, v: stats.kendalltau(u, v).statistic  # noqa: E731
    expected = (t(x, y) - t(x, z) * t(y, z)) / math.sqrt((1 - t(x, z) ** 2) * (1 - t(y, z) ** 2))
    assert st.partial_kendall(x, y, z)["tau"] == pytest.approx(expected)
    rng = np.random.default_rng(5)
    loss = rng.normal(size=40)
    error = loss + 0.1 * rng.normal(size=40)
    term = loss + 0.1 * rng.normal(size=40)  # the term is the loss plus noise: nothing beyond it
    r = st.partial_kendall(term, error, loss)
    assert st.kendall(term, error)["tau"] > 0.6 and r["p"] > 0.05 and r["n_test"] == 40
    beyond = st.partial_kendall(error - loss + 0.01 * rng.normal(size=40), error, loss)  # the term tracks what the loss misses
    assert beyond["p"] < 0.01 and beyond["ci"][0] > 0


#: Nulls of "nothing beyond the loss" where term and error both track the loss z strongly:
#: linear, monotone non-linear (one or both), skewed and heteroscedastic noise.
_STRONG_NULLS = {
    "linear": lambda z, r: (z + 0.2 * r.normal(size=z.size), z + 0.2 * r.normal(size=z.size)),
    "linear, very strong": lambda z, r: (z + 0.05 * r.normal(size=z.size), 2 * z + 0.05 * r.normal(size=z.size)),
    "exponential and cubic": lambda z, r: (np.exp(z) + 0.2 * r.normal(size=z.size), z**3 + 0.2 * r.normal(size=z.size)),
    "two exponentials": lambda z, r: (np.exp(z) + 0.2 * r.normal(size=z.size), np.exp(0.8 * z) + 0.2 * r.normal(size=z.size)),
    "skewed noise": lambda z, r: (z + 0.3 * r.exponential(size=z.size), np.tanh(z) + 0.3 * r.exponential(size=z.size)),
    "heteroscedastic": lambda z, r: (z + 0.3 * np.abs(z) * r.normal(size=z.size), z + 0.3 * np.abs(z) * r.normal(size=z.size)),
    "moderate": lambda z, r: (z + r.normal(size=z.size), z + r.normal(size=z.size)),
}


@pytest.mark.slow
@pytest.mark.parametrize("n", [10, 17, 30])
def test_the_beyond_the_loss_test_keeps_its_level_when_term_and_error_track_the_loss_strongly(n):
    """2,000 simulated nulls per case: the rejection rate at 0.05 stays below 0.05 plus two
    standard errors. (The Freedman-Lane permutation it replaced rejected 12-16% of the
    linear nulls at n = 17 and 30.)"""
    trials, limit = 2000, 0.05 + 2 * math.sqrt(0.05 * 0.95 / 2000)
    for name, draw in _STRONG_NULLS.items():
        rng = np.random.default_rng(n * 1000 + len(name))
        hits = 0
        for _ in range(trials):
            z = rng.normal(size=n)
            x, y = draw(z, rng)
            hits += st.beyond_loss_test(x, y, z)["p"] <= 0.05
        assert hits / trials <= limit, (name, n, hits / trials)


def test_the_beyond_the_loss_test_has_power_when_the_term_carries_what_the_loss_misses():
    rng = np.random.default_rng(12)
    for n, least in ((17, 0.6), (30, 0.95)):
        hits = 0
        for _ in range(500):
            z, extra = rng.normal(size=n), rng.normal(size=n)
            hits += st.beyond_loss_test(z + 0.3 * extra, z + 0.3 * extra + 0.1 * rng.normal(size=n), z)["p"] <= 0.05
        assert hits / 500 >= least, (n, hits / 500)


def test_the_partial_tau_test_runs_on_the_settings_means_when_seeds_are_grouped():
    rng = np.random.default_rng(4)
    setting = np.repeat(np.arange(6), 5)
    z = np.repeat(rng.normal(size=6), 5) + 0.01 * rng.normal(size=30)
    y, x = z + 0.1 * rng.normal(size=30), rng.normal(size=30)
    r = st.partial_kendall(x, y, z, groups=setting)
    assert r["n"] == 30 and r["n_test"] == 6


def test_cluster_bootstrap_resamples_whole_settings():
    """Five seeds of one setting move together: the cluster bootstrap's interval of tau is
    wider than the one that treats the 40 runs as independent."""
    rng = np.random.default_rng(9)
    setting = np.repeat(rng.normal(size=8), 5)  # 8 settings, 5 seeds each
    x, y = setting + 0.05 * rng.normal(size=40), setting * 0.2 + rng.normal(size=40) * 0.3
    groups = np.repeat(np.arange(8), 5)
    free, clustered = st.kendall(x, y, groups=None), st.kendall(x, y, groups=groups)
    assert free["tau"] == clustered["tau"]
    assert clustered["ci"][1] - clustered["ci"][0] > free["ci"][1] - free["ci"][0]
    draws = st._resample(40, 10, 0, groups)
    assert len(draws) == 1 and draws[0].shape == (10, 40)
    assert all(len(set(groups[row[k * 5:(k + 1) * 5]])) == 1 for row in draws[0] for k in range(8))  # whole settings


def test_sign_agreement_takes_the_worst_environment():
    df = pd.DataFrame({"a": [0, 1, 0, 1, 0, 1], "b": [0, 0, 1, 1, 2, 2], "config.seed": 0, "t": [1, 2, 3, 4, 5, 6], "e": [1, 2, 3, 4, 6, 5]})
    r = st.sign_agreement(df, "t", "e", ["a", "b"])
    assert r["agreement[a]"] == pytest.approx(2 / 3) and r["agreement[b]"] == 1.0 and r["worst"] == pytest.approx(2 / 3) and r["worst_axis"] == "a"


def _sign_agreement_loops(df, term, target, axes):
    """The pairwise loops sign_agreement was first written as: the reference for its masks."""
    out = {}
    sub = df.dropna(subset=[term, target]).reset_index(drop=True)
    key = [*axes, "config.seed"] if "config.seed" in sub else list(axes)
    for axis in axes:
        others = [k for k in key if k != axis]
        agree, total = 0, 0
        for _, g in sub.groupby(others, dropna=False) if others else [(None, sub)]:
            rows = g.to_dict("records")
            for i in range(len(rows)):
                for j in range(i + 1, len(rows)):
                    if rows[i][axis] == rows[j][axis]:
                        continue
                    dt, de = rows[i][term] - rows[j][term], rows[i][target] - rows[j][target]
                    if dt == 0 or de == 0:
                        continue
                    total += 1
                    agree += int((dt > 0) == (de > 0))
        out[f"agreement[{axis}]"] = agree / total if total else math.nan
        out[f"pairs[{axis}]"] = total
    return out


@pytest.mark.parametrize("seed", range(40))
def test_sign_agreement_counts_the_pairs_the_loops_count(seed):
    """The vectorised masks against the pairwise loops on random grids: ties in the term and the
    error, missing axis values (a config key some runs lack), strings, seeds shared or not."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    df = pd.DataFrame({
        "a": rng.choice([0.1, 0.2, np.nan], n), "b": rng.choice(["x", "y", "z"], n), "c": rng.integers(0, 3, n),
        "t": rng.integers(0, 5, n).astype(float), "e": rng.choice([0.0, 1.0, 2.0, np.nan], n),
    })
    if seed % 2:
        df["config.seed"] = rng.integers(0, 2, n)
    mine, ref = st.sign_agreement(df, "t", "e", ["a", "b", "c"]), _sign_agreement_loops(df, "t", "e", ["a", "b", "c"])
    for k, v in ref.items():
        assert (math.isnan(v) and math.isnan(mine[k])) or mine[k] == v, (k, mine[k], v)


def test_the_vectorised_tau_b_of_the_bootstrap_matches_scipy_with_ties():
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 4, size=12).astype(float), rng.normal(size=12)
    idx = rng.integers(0, 12, size=(200, 12))
    ours = st._tau_b_many(a, b, idx)
    ref = np.array([stats.kendalltau(a[i], b[i]).statistic for i in idx])
    assert np.allclose(ours, ref, equal_nan=True, atol=1e-12)


def test_a_claim_on_an_unmeasured_column_is_not_testable_and_counted_as_such():
    from clbounds.figures.claims import Claim, summary, test_claims

    df = pd.DataFrame({"v": ["A", "B"] * 6, "config.seed": [s for s in range(6) for _ in range(2)],  # 2 one-sided tests: decidable from 6 seeds
                       "acc": [0.9, 0.8, 0.91, 0.79, 0.92, 0.8, 0.9, 0.81, 0.93, 0.8, 0.9, 0.82]})
    table = test_claims(df, "v", [Claim("A beats B", "acc", "A", "B"), Claim("A is sharper", "sharpness", "A", "B")])
    assert table["verdict"].tolist()[1] == "not testable" and table["holm tests"].max() == 2
    text = summary(table)
    assert "1 not testable" in text and "Holm over the target's 2 one-sided tests" in text and text.startswith("Reproduced: 1 of 2")
    only = test_claims(df, "v", [Claim("A is sharper", "sharpness", "A", "B")])
    assert summary(only).startswith("Not testable")


def test_a_not_resolvable_verdict_counts_the_zero_differences():
    """Three of nine seeds tie (the same accuracy on both variants): their differences carry no
    sign, the exact test has 6 left (floor 2^-6), and 18 Holm tests cannot pass with it."""
    a = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98]
    b = [0.90, 0.91, 0.92, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]
    c = st.compare(a, b)
    assert c["nonzero"] == 6 and c["p_floor"] == 2.0**-6
    (adjusted,) = st.adjust([c] * 9)[:1]
    assert "3 of the 9 paired differences are 0 and carry no sign" in adjusted["verdict"] and "9 non-zero differences needed" in adjusted["verdict"]
