"""Statistics a reviewer accepts: intervals, paired tests with multiple-comparison control,
three-way verdicts with the design's power, and rank correlations with their uncertainty and
their value beyond the training loss. Numbers in, numbers out (numpy and scipy only).

- :func:`mean_ci`: a mean over seeds with its Student-t interval (exact under normal seed
  noise at any n; the percentile bootstrap of a mean of 5, even expanded, covers 83-92%);
  :func:`accuracy_ci` adds the test inputs where a seed's split does not already resample them.
  :func:`bootstrap_ci` is the percentile bootstrap for other statistics.
- :func:`paired_test`: variants compared on the same seeds (and so the same data and test
  inputs): the exact sign-flip permutation test on the per-seed differences (valid whenever
  the two variants' labels are exchangeable within a seed, whatever the distribution of the
  differences), with the paired t-test beside it as a labelled secondary, the effect size d_z
  and the t-interval of the mean difference. :func:`holm` controls the family-wise error over
  a target's comparisons (Holm 1979).
- :func:`three_way`: "reproduced", "contradicted" or "not resolved at n seeds", decided by a
  one-sided test in each direction at a stated level, never by comparing point estimates; "not
  resolvable at n seeds" when the exact test's smallest attainable p-value is above the
  (corrected) level, with the number of seeds that would reach it;
  :func:`minimum_detectable_difference` is the smallest true difference the design would have
  detected with 80% power, from the seed-to-seed spread (t approximation).
- :func:`kendall`: Kendall τ-b with its exact p-value (no ties, n ≤ 50; the normal
  approximation otherwise) and a bootstrap interval over runs, or over grid points (a cluster
  bootstrap: a grid point's seeds are not independent runs); :func:`partial_kendall`: τ of a
  term and the error given the training loss, with :func:`beyond_loss_test` (does the term
  add anything beyond the loss? the generalised covariance measure on values and on ranks,
  valid when term and error both depend strongly on the loss);
  :func:`sign_agreement`: Dziugaite et al.'s robust view, the worst case over environments
  (pairs of runs that differ in one axis) of how often the term and the error move together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95  # two-sided confidence of every interval
ALPHA = 0.05  # level of every test (after Holm's correction where a target makes several)
N_BOOT = 4000


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over ``values`` (seeds), mean ±
    t_{(1+level)/2, n−1}·s/√n. It covers ``level`` exactly when the seed-to-seed noise is
    normal, at any n (tests/test_statistics.py simulates it at n = 5).

    With one value the interval is the value itself (no spread to estimate): callers say "one seed".

    Example:
        >>> m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
        >>> m, round(lo, 3), round(hi, 3)
        (2.5, 0.446, 4.554)
    """
    x = _finite(values)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size == 1:
        return (m, m, m)
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0,
                 stat: Callable[[np.ndarray], float] = np.median) -> tuple[float, float, float]:
    """(statistic, low, high): the percentile bootstrap interval of ``stat`` over ``values``,
    for statistics without a t-interval (a median, a ratio). For a mean over a few seeds use
    :func:`mean_ci`: the percentile bootstrap of a mean of 5 covers about 83%.

    With one value the interval is the value itself (nothing to resample): callers say "one seed".

    Example:
        >>> m, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 10.0])
        >>> m, lo <= m <= hi
        (3.0, True)
    """
    x = _finite(values)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    point = float(stat(x))
    if x.size == 1:
        return (point, point, point)
    idx = _rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boots = np.apply_along_axis(stat, 1, x[idx])
    a = (1 - level) / 2
    return (point, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))


def accuracy_ci(accuracies: Sequence[float], n_test: int, split_per_seed: bool = False, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of an accuracy over seeds and test inputs.

    Every seed meets the same ``n_test`` test inputs, so their sampling error does not average
    over seeds: the interval is mean ± t_{n−1}·√(s²/n + p̄(1−p̄)/n_test), the seeds' spread s and
    the binomial variance of one test set of the mean accuracy p̄.

    With ``split_per_seed`` (each seed draws its own test inputs, as the embedded synthetic
    and digits data do) the spread between seeds already holds the test inputs' part, and
    adding it again would count it twice: then, from 2 seeds on, the interval is the seeds'
    (:func:`mean_ci`) alone. With one seed the interval is the test inputs' alone (a
    percentile bootstrap of Binomial(n_test, accuracy)/n_test).

    Example:
        >>> m, lo, hi = accuracy_ci([0.9], n_test=100)
        >>> round(m, 3), lo < 0.9 < hi   # one seed: the interval is the test-input part alone
        (0.9, True)
    """
    x = _finite(accuracies)
    if x.size == 0 or n_test < 1:
        return (math.nan, math.nan, math.nan)
    if split_per_seed and x.size >= 2:
        return mean_ci(x, level)
    m = float(x.mean())
    if x.size == 1:
        draws = _rng(seed).binomial(n_test, np.clip(m, 0, 1), size=n_boot) / n_test
        a = (1 - level) / 2
        return (m, float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a)))
    p = min(max(m, 0.0), 1.0)
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1) * math.sqrt(x.var(ddof=1) / x.size + p * (1 - p) / n_test))
    return (m, m - half, m + half)


#: Up to this many nonzero differences the sign-flip test enumerates every sign pattern (2^n).
EXACT_SIGN_FLIP_N = 16


def sign_flip_test(d: Sequence[float], n_perm: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """The one-sample sign-flip permutation test of the paired differences ``d`` (Fisher 1935):
    under the null, each difference is as likely to have either sign (the two variants' labels
    are exchangeable within a seed), so the sum of d is compared with its value under all 2^n
    sign patterns (a random 20,000 of them above ``EXACT_SIGN_FLIP_N``, with the +1 correction).
    Exact at any n and for any distribution of |d|; zero differences carry no sign and drop out.

    Returns one-sided ``p_greater`` (mean d > 0) and ``p_less``, two-sided ``p`` and ``p_floor``,
    the smallest p-value the test can reach with these differences (2^-n when exact), and
    ``nonzero``, the n of the differences that are not 0.

    Example:
        >>> r = sign_flip_test([0.2, 0.1, 0.3, 0.25, 0.15])   # five of one sign: the smallest p of 5
        >>> r["p_greater"], r["p_floor"]
        (0.03125, 0.03125)
    """
    x = _finite(d)
    x = x[x != 0]
    magnitude, sign = np.abs(x), np.sign(x)
    n = magnitude.size
    if n == 0:
        return {"p_greater": 1.0, "p_less": 1.0, "p": 1.0, "p_floor": 1.0, "nonzero": 0, "method": "sign-flip (no nonzero difference)"}
    observed = float((magnitude * sign).sum())
    if n <= EXACT_SIGN_FLIP_N:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        null, extra, method, floor = signs @ magnitude, 0, f"exact sign-flip permutation over all {2**n} sign patterns", 2.0**-n
    else:
        signs = _rng(seed).choice(np.array([-1.0, 1.0]), size=(n_perm, n))
        null, extra, method, floor = signs @ magnitude, 1, f"sign-flip permutation, {n_perm} random sign patterns", 1 / (n_perm + 1)
    tol = 1e-12 * float(magnitude.sum())  # the observed pattern ties with itself despite rounding
    p_greater = (float((null >= observed - tol).sum()) + extra) / (null.size + extra)
    p_less = (float((null <= observed + tol).sum()) + extra) / (null.size + extra)
    return {"p_greater": p_greater, "p_less": p_less, "p": min(1.0, 2 * min(p_greater, p_less)), "p_floor": floor, "nonzero": n, "method": method}


def paired_test(a: Sequence[float], b: Sequence[float], level: float = LEVEL, seed: int = 0) -> dict[str, Any]:
    """A against B on the same seeds: the per-seed differences d = a − b.

    The decision is the exact sign-flip permutation test (:func:`sign_flip_test`): one-sided
    ``p_greater`` (A > B) and ``p_less`` (A < B), two-sided ``p`` and ``p_floor``. Beside it, as
    a labelled secondary that assumes normal differences: the paired t-test (``t``, ``p_t``,
    ``p_greater_t``, ``p_less_t``; scipy.stats.ttest_rel, None without spread). Also n, the mean
    difference with its t-interval, its sd and the effect size d_z = mean(d)/sd(d). With fewer
    than 2 pairs nothing is tested (p None).

    Example:
        >>> r = paired_test([0.9, 0.8, 0.85, 0.95, 0.9], [0.7, 0.65, 0.7, 0.8, 0.72])
        >>> r["p_greater"], r["p_greater_t"] < 0.01, r["mean_difference"] > 0
        (0.03125, True, True)
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples need one length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    out: dict[str, Any] = {"n": int(d.size), "mean_difference": float(d.mean()) if d.size else math.nan}
    _, lo, hi = mean_ci(d, level)
    out["ci"] = (lo, hi)
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    out["sd_difference"] = sd
    out.update(d_z=None, t=None, p_t=None, p_greater_t=None, p_less_t=None)
    if d.size < 2:
        out.update(p=None, p_greater=None, p_less=None, p_floor=None, nonzero=None, test="none (fewer than 2 paired seeds)")
        return out
    flip = sign_flip_test(d, seed=seed)
    out.update(p=flip["p"], p_greater=flip["p_greater"], p_less=flip["p_less"], p_floor=flip["p_floor"], nonzero=flip["nonzero"], test=flip["method"])
    if sd > 1e-9 * max(1.0, float(np.abs(d).max())):  # with no spread (up to rounding) t is 0/0 or a rounding artefact
        two_sided = stats.ttest_rel(x[keep], y[keep])
        out.update(d_z=float(d.mean() / sd), t=float(two_sided.statistic), p_t=float(two_sided.pvalue),
                   p_greater_t=float(stats.ttest_rel(x[keep], y[keep], alternative="greater").pvalue),
                   p_less_t=float(stats.ttest_rel(x[keep], y[keep], alternative="less").pvalue))
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the k-th smallest of m is
    multiplied by m − k + 1, then made monotone and capped at 1.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = round(running, 15)
    return out


def minimum_detectable_difference(sd_difference: float, n: int, alpha: float = ALPHA, power: float = 0.8, one_sided: bool = True) -> float:
    """The smallest true mean difference a paired t-test of n seeds detects with ``power``,
    exactly: the δ at which the noncentral t (n − 1 degrees of freedom, noncentrality
    δ√n/sd) exceeds the critical value t_{1−α} with probability ``power`` (α/2 two-sided).

    Example:
        >>> round(minimum_detectable_difference(1.0, 5), 3)
        1.359
    """
    if n < 2 or not np.isfinite(sd_difference):
        return math.nan
    if sd_difference == 0:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - (alpha if one_sided else alpha / 2), df)
    from scipy.optimize import brentq

    nc = brentq(lambda nc: stats.nct.sf(crit, df, nc) - power, 0.0, 100.0 + 10 * crit)
    return float(nc * sd_difference / math.sqrt(n))


def seeds_needed(level: float) -> int:
    """The fewest seeds at which the exact sign-flip test can reach a p-value at or below
    ``level`` (2^-n ≤ level).

    Example:
        >>> seeds_needed(0.05), seeds_needed(0.05 / 6)
        (5, 7)
    """
    return max(1, math.ceil(math.log2(1 / level) - 1e-12))


def three_way(p_claimed: float | None, p_opposite: float | None, n: int, alpha: float = ALPHA, p_floor: float | None = None, tests: int = 1,
              nonzero: int | None = None) -> str:
    """"reproduced" when the claimed direction is significant at ``alpha`` (after Holm's
    correction over ``tests`` one-sided tests, which the caller applies to the p-values),
    "contradicted" when the opposite one is, else "not resolved at n seeds". When even the
    test's smallest attainable p-value ``p_floor`` cannot pass Holm's first step (p_floor ·
    tests > alpha), no outcome of these seeds could decide: "not resolvable at n seeds", with
    the number of seeds that could; ``nonzero`` (the differences that are not 0, which alone
    carry a sign) says how many of the ``n`` dropped out.

    Example:
        >>> three_way(0.01, 0.99, 5), three_way(0.2, 0.8, 5)
        ('reproduced', 'not resolved at 5 seeds')
        >>> three_way(0.03125, 1.0, 5, p_floor=0.03125, tests=4)
        'not resolvable at 5 seeds (smallest attainable p 0.0312 x 4 tests > 0.05; 7 seeds needed)'
        >>> three_way(1.0, 1.0, 9, p_floor=2 ** -6, tests=18, nonzero=6)  # three seeds gave equal values: their differences carry no sign
        'not resolvable at 9 seeds (3 of the 9 paired differences are 0 and carry no sign; smallest attainable p 0.0156 x 18 tests > 0.05; 9 non-zero differences needed)'
    """
    if p_floor is not None and p_floor * tests > alpha:
        ties = nonzero is not None and 0 < nonzero < n
        why = f"{n - nonzero} of the {n} paired differences are 0 and carry no sign; " if ties else ""
        return (f"not resolvable at {n} seed{'s' if n != 1 else ''} ({why}smallest attainable p {p_floor:.3g} x {tests} test{'s' if tests != 1 else ''} > {alpha:g}; "
                f"{seeds_needed(alpha / tests)} {'non-zero differences' if ties else 'seeds'} needed)")
    if p_claimed is not None and p_claimed < alpha:
        return "reproduced"
    if p_opposite is not None and p_opposite < alpha:
        return "contradicted"
    return f"not resolved at {n} seed{'s' if n != 1 else ''}"


def compare(a: Sequence[float], b: Sequence[float], claim: str = "greater", alpha: float = ALPHA) -> dict[str, Any]:
    """:func:`paired_test` plus the minimum detectable difference (t approximation; infinite
    where the exact test cannot reach ``alpha``) and the uncorrected three-way verdict for the
    claim "A greater than B" (``claim="greater"``) or "A less than B"."""
    r = paired_test(a, b)
    claimed, opposite = ("p_greater", "p_less") if claim == "greater" else ("p_less", "p_greater")
    r["claim"] = claim
    r["p_claimed"], r["p_opposite"] = r[claimed], r[opposite]
    r["mdd"] = math.inf if r.get("p_floor") is not None and r["p_floor"] > alpha else minimum_detectable_difference(r["sd_difference"], r["n"], alpha)
    r["verdict"] = three_way(r["p_claimed"], r["p_opposite"], r["n"], alpha, r.get("p_floor"), nonzero=r.get("nonzero"))
    return r


def adjust(comparisons: Sequence[dict[str, Any]], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Holm over a target's comparisons: each gets ``p_claimed_holm``/``p_opposite_holm``
    and its verdict again at the corrected level. Both directions of every comparison are
    in one family (2m hypotheses), so the family-wise error stays at ``alpha``. The minimum
    detectable difference is recomputed at Holm's first-step level, alpha over the number of
    tests (``holm_tests``: the p-values that entered, not the claims)."""
    ps = [c.get("p_claimed") for c in comparisons] + [c.get("p_opposite") for c in comparisons]
    adj = holm(ps)
    m = len(comparisons)
    tests = sum(p is not None for p in ps)
    out = []
    for i, c in enumerate(comparisons):
        c = dict(c, p_claimed_holm=adj[i], p_opposite_holm=adj[m + i], holm_tests=tests)
        c["verdict"] = three_way(c["p_claimed_holm"], c["p_opposite_holm"], c["n"], alpha, c.get("p_floor"), tests, c.get("nonzero"))
        if c.get("p_floor") is not None and c["p_floor"] * tests > alpha:
            c["mdd"] = math.inf  # no outcome of these seeds passes the corrected level
        elif tests > 1 and "sd_difference" in c:
            # What the corrected design detects: a claim passes Holm for sure only at its
            # first step, alpha over the number of tests; quoting the uncorrected MDD would
            # overstate the design's sensitivity about twofold.
            c["mdd"] = minimum_detectable_difference(c["sd_difference"], c["n"], alpha / tests)
        out.append(c)
    return out


# ---- rank correlations ---------------------------------------------------------------------


def _tau_b_rowwise(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Kendall τ-b of row k of ``A`` with row k of ``B`` (``B`` may be one row, broadcast),
    from the signs of all pair differences (a tie contributes 0 to the numerator and to its
    side's count), in chunks of a few tens of MB whatever the size."""
    i, j = np.triu_indices(A.shape[1], 1)
    out = np.empty(A.shape[0])
    step = max(1, 2_000_000 // max(1, i.size))
    for s in range(0, A.shape[0], step):
        Bs = B if B.shape[0] == 1 else B[s:s + step]
        sa, sb = np.sign(A[s:s + step, i] - A[s:s + step, j]), np.sign(Bs[:, i] - Bs[:, j])
        den = np.sqrt((sa * sa).sum(1) * (sb * sb).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + step] = np.where(den > 0, (sa * sb).sum(1) / den, np.nan)
    return out


def _tau_b_many(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall τ-b of (a[idx_k], b[idx_k]) for every row k of ``idx`` at once."""
    return _tau_b_rowwise(a[idx], b[idx])


def _resample(n: int, n_boot: int, seed: int, groups: Sequence[Any] | None) -> list[np.ndarray]:
    """Bootstrap index sets over n rows: rows drawn with replacement, or whole groups (a
    cluster bootstrap: the seeds of one grid point move together, because they share every
    setting and are not independent runs). Equal-sized groups give one (n_boot, n) array."""
    rng = _rng(seed)
    if groups is None:
        return [rng.integers(0, n, size=(n_boot, n))]
    codes, uniq = pd.factorize(pd.Series(list(groups)).astype(str))
    members = [np.flatnonzero(codes == g) for g in range(len(uniq))]
    picks = rng.integers(0, len(members), size=(n_boot, len(members)))
    sizes = {m.size for m in members}
    if len(sizes) == 1:
        return [np.stack([np.concatenate([members[g] for g in row]) for row in picks])]
    return [np.concatenate([members[g] for g in row])[None, :] for row in picks]


def _boot_taus(a: np.ndarray, b: np.ndarray, draws: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([_tau_b_many(a, b, idx) for idx in draws])


def kendall(x: Sequence[float], y: Sequence[float], level: float = LEVEL, n_boot: int = 2000, seed: int = 0, groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Kendall τ-b with its two-sided p-value (exact when there are no ties and n ≤ 50, the
    normal approximation otherwise; scipy.stats.kendalltau) and a bootstrap interval over runs
    (over ``groups`` of runs when given: a cluster bootstrap).

    Example:
        >>> r = kendall([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5])
        >>> round(r["tau"], 3), r["method"]
        (0.6, 'exact')
    """
    a, b, g = _clean_grouped(groups, x, y)
    n = a.size
    out: dict[str, Any] = {"n": n, "tau": math.nan, "p": math.nan, "ci": (math.nan, math.nan), "method": ""}
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return out
    ties = len(np.unique(a)) < n or len(np.unique(b)) < n
    method = "exact" if not ties and n <= 50 else "asymptotic"
    r = stats.kendalltau(a, b, method=method)
    out.update(tau=float(r.statistic), p=float(r.pvalue), method=method)
    boots = _boot_taus(a, b, _resample(n, n_boot, seed, g))
    boots = boots[np.isfinite(boots)]
    if boots.size:
        q = (1 - level) / 2
        out["ci"] = (float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q)))
    return out


def _clean_grouped(groups: Sequence[Any] | None, *cols: Sequence[float]) -> list:
    """The finite rows of ``cols``, and the matching ``groups`` (or None)."""
    arrs = [np.asarray(c, dtype=float) for c in cols]
    keep = np.all([np.isfinite(a) for a in arrs], axis=0)
    return [a[keep] for a in arrs] + [None if groups is None else [v for v, k in zip(groups, keep) if k]]


def _partial_tau(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    t_ab, t_ac, t_bc = (stats.kendalltau(u, v).statistic for u, v in ((a, b), (a, c), (b, c)))
    denom = math.sqrt(max(0.0, (1 - t_ac**2) * (1 - t_bc**2)))
    return float((t_ab - t_ac * t_bc) / denom) if denom > 0 else math.nan


def _partial_from(t_ab: np.ndarray, t_ac: np.ndarray, t_bc: np.ndarray | float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(np.clip((1 - t_ac**2) * (1 - t_bc**2), 0, None))
        return np.where(den > 0, (t_ab - t_ac * t_bc) / den, np.nan)


def _gcm_p(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Two-sided p of the generalised covariance measure: x and y regressed linearly on z, the
    products R of their residuals, T = √n·mean(R)/sd(R) against Student's t with n − 1 df."""
    zc = z - z.mean()
    residual = lambda v: (v - v.mean()) - zc * (zc @ (v - v.mean())) / (zc @ zc)  # noqa: E731  (least squares on [1, z])
    r = residual(x) * residual(y)
    sd = r.std(ddof=1)
    if not sd > 0:
        return 1.0
    return float(2 * stats.t.sf(abs(math.sqrt(r.size) * r.mean() / sd), r.size - 1))


def beyond_loss_test(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> dict[str, Any]:
    """Does x carry information about y beyond z (the training loss)? A test of "x ⊥ y | z"
    that keeps its level when x and y both depend strongly on z.

    The generalised covariance measure of Shah & Peters (2020, "The hardness of conditional
    independence testing and the generalised covariance measure"): x and y are each regressed
    on z, and the mean product of their residuals is tested against 0 with its own standard
    error (T = √n·mean/sd, Student's t with n − 1 df). It is computed twice, with linear
    regressions on the values and on the ranks, and rejects only when both do (p is the
    larger of the two), so it holds its level when *either* the conditional means are linear
    in the loss *or* linear in its rank: 5 to 30 runs cannot tell which, and no test of
    conditional independence is valid without some such assumption (Shah & Peters' "no free
    lunch"). ``tests/test_statistics.py`` simulates its level at n = 10, 17 and 30 with term
    and error tracking the loss strongly (linear, exponential and cubic, skewed and
    heteroscedastic noise).

    It replaces a Freedman–Lane permutation of rank residuals, which rejected a true null
    9–18% of the time when both tracked the loss closely: the ranks of two noisy copies of the
    loss swap at the same close pairs, so their rank residuals share a sign pattern set by
    the loss.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=20); extra = rng.normal(size=20)
        >>> beyond_loss_test(extra, z + extra, z)["p"] < 0.05
        True
    """
    a, b, c = (np.asarray(v, dtype=float) for v in (x, y, z))
    out: dict[str, Any] = {"n": a.size, "p": math.nan, "p_values": math.nan, "p_ranks": math.nan, "test": "GCM on values and on ranks (Shah & Peters 2020)"}
    if a.size < 4 or min(np.ptp(a), np.ptp(b), np.ptp(c)) == 0:
        return out
    p_values = _gcm_p(a, b, c)
    p_ranks = _gcm_p(*(stats.rankdata(v) for v in (a, b, c)))
    out.update(p=max(p_values, p_ranks), p_values=p_values, p_ranks=p_ranks)
    return out


def partial_kendall(x: Sequence[float], y: Sequence[float], z: Sequence[float], level: float = LEVEL, n_boot: int = 2000, seed: int = 0,
                    groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Kendall's partial τ of x and y given z (Kendall 1942): (τ_xy − τ_xz τ_yz)/√((1−τ_xz²)(1−τ_yz²)),
    with the test :func:`beyond_loss_test` (p; with ``groups``, on the groups' means, since
    the seeds of one setting are not exchangeable runs: ``n_test`` units) and a bootstrap
    interval over runs (over ``groups`` when given). The interval is descriptive only: at
    these sizes it is too narrow and does not decide anything. With z the training loss, a
    small p says the term ranks the error beyond what the loss already does.

    It is a measure of association given z, not a test of conditional independence: a
    monotone but non-linear dependence on z can leave a partial τ away from 0. ``n`` counts
    the rows where all three are finite; ``dropped`` the resamples where a denominator was 0.

    Example:
        >>> r = partial_kendall([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [3, 1, 2, 7, 5, 6, 4])
        >>> r["tau"] > 0.9
        True
    """
    a, b, c, g = _clean_grouped(groups, x, y, z)
    n = a.size
    out: dict[str, Any] = {"n": n, "tau": math.nan, "ci": (math.nan, math.nan), "p": math.nan, "n_test": 0, "dropped": 0}
    if n < 4 or min(np.ptp(a), np.ptp(b), np.ptp(c)) == 0:
        return out
    out["tau"] = _partial_tau(a, b, c)
    units = pd.DataFrame({"a": a, "b": b, "c": c, "g": g if g is not None else range(n)}).groupby("g", sort=False).mean()
    test = beyond_loss_test(units["a"], units["b"], units["c"])
    out.update(p=test["p"], n_test=len(units), test=test["test"])
    draws = _resample(n, n_boot, seed, g)
    boots = _partial_from(_boot_taus(a, b, draws), _boot_taus(a, c, draws), _boot_taus(b, c, draws))
    out["dropped"] = int((~np.isfinite(boots)).sum())
    boots = boots[np.isfinite(boots)]
    if boots.size:
        q = (1 - level) / 2
        out["ci"] = (float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q)))
    return out


def _inversion_pmf(n: int) -> np.ndarray:
    """P(a uniformly random permutation of n has k inversions), k = 0..n(n−1)/2 (Mahonian numbers)."""
    pmf = np.ones(1)
    for m in range(2, n + 1):
        pmf = np.convolve(pmf, np.full(m, 1.0 / m))
    return pmf


def _kendall_s(x: np.ndarray, y: np.ndarray) -> int:
    i, j = np.triu_indices(x.size, 1)
    return int((np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])).sum())


def stratified_kendall(strata: Sequence[tuple[Sequence[float], Sequence[float]]], n_perm: int = 20000, seed: int = 0) -> dict[str, Any]:
    """Does y rise with x within every stratum (here: each seed's ordering of the settings)?
    The statistic is Kendall's S = concordant − discordant pairs, summed over the strata; under
    the null each stratum's y is a uniformly random permutation against its x, independently.
    Without ties the null distribution is exact (a convolution of the strata's Mahonian
    inversion counts; one stratum gives scipy's exact Kendall test); with ties it is a
    permutation test within strata (``n_perm`` draws). Pooling S keeps the evidence of seeds
    that all agree, where a t-test over per-seed τ sees no spread and cannot decide.

    Returns n strata, the mean per-stratum τ-b, S, ``p_greater``, ``p_less`` and ``method``.

    Example:
        >>> r = stratified_kendall([([1, 2, 3, 4], [1, 2, 3, 4])] * 3)
        >>> round(r["tau"], 6), r["p_greater"] < 0.001
        (1.0, True)
    """
    pairs = []
    for x, y in strata:
        a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        if a.size >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
            pairs.append((a, b))
    out: dict[str, Any] = {"n": len(pairs), "tau": math.nan, "S": 0, "p_greater": None, "p_less": None, "method": ""}
    if not pairs:
        return out
    out["tau"] = float(np.mean([stats.kendalltau(a, b).statistic for a, b in pairs]))
    s_obs = sum(_kendall_s(a, b) for a, b in pairs)
    out["S"] = s_obs
    ties = any(len(np.unique(a)) < a.size or len(np.unique(b)) < b.size for a, b in pairs)
    if not ties:
        pmf = np.ones(1)
        for a, _ in pairs:
            pmf = np.convolve(pmf, _inversion_pmf(a.size))
        total = sum(a.size * (a.size - 1) // 2 for a, _ in pairs)
        inversions = (total - s_obs) // 2  # S = N − 2·inversions
        out.update(p_greater=float(min(1.0, pmf[: inversions + 1].sum())), p_less=float(min(1.0, pmf[inversions:].sum())), method="exact")
        return out
    rng = _rng(seed)
    null = np.zeros(n_perm, dtype=np.int64)
    for a, b in pairs:
        i, j = np.triu_indices(a.size, 1)
        sa = np.sign(a[i] - a[j])
        perm = np.argsort(rng.random((n_perm, b.size)), axis=1)
        bp = b[perm]
        null += (sa * np.sign(bp[:, i] - bp[:, j])).sum(1).astype(np.int64)
    out.update(p_greater=float((1 + (null >= s_obs).sum()) / (n_perm + 1)), p_less=float((1 + (null <= s_obs).sum()) / (n_perm + 1)),
               method=f"permutation within strata, {n_perm} draws (ties)")
    return out


def sign_agreement(df: pd.DataFrame, term: str, target: str, axes: Sequence[str]) -> dict[str, Any]:
    """Dziugaite et al. (2020)'s robust view of a measure: each *environment* is a pair of runs
    that differ in exactly one axis (the seed may differ too: seeds are paired by sharing one);
    in it, does the term move in the same direction as the error? Per axis the fraction of
    agreeing pairs; the robust score is the worst axis (the minimum), not the average.

    Returns {"agreement[<axis>]": fraction, "pairs[<axis>]": count, "worst": min, "worst_axis"}.

    Example:
        >>> df = pd.DataFrame({"a": [0, 1, 0, 1], "b": [0, 0, 1, 1], "t": [1, 2, 3, 4], "e": [1, 2, 4, 3]})
        >>> r = sign_agreement(df, "t", "e", ["a", "b"])
        >>> r["agreement[a]"], r["agreement[b]"], r["worst"]
        (0.5, 1.0, 0.5)
    """
    out: dict[str, Any] = {}
    sub = df.dropna(subset=[term, target]).reset_index(drop=True)
    key = [*axes, "config.seed"] if "config.seed" in sub else list(axes)
    # All pairs at once: each column's values as integer codes (a missing value is a code of its
    # own, as groupby(dropna=False) groups them), then pairwise comparisons as n × n masks.
    codes = {k: pd.factorize(sub[k], use_na_sentinel=False)[0] for k in key}
    missing = {k: sub[k].isna().to_numpy() for k in key}
    dt = np.sign(np.subtract.outer(sub[term].to_numpy(float), sub[term].to_numpy(float)))
    de = np.sign(np.subtract.outer(sub[target].to_numpy(float), sub[target].to_numpy(float)))
    upper = np.triu(np.ones((len(sub), len(sub)), dtype=bool), k=1)
    moved = upper & (dt != 0) & (de != 0)
    for axis in axes:
        same_others = np.ones_like(upper)
        for k in key:
            if k != axis:
                same_others &= codes[k][:, None] == codes[k][None, :]
        # the axis differs; two missing values count as different (NaN != NaN), as before
        differs = (codes[axis][:, None] != codes[axis][None, :]) | (missing[axis][:, None] & missing[axis][None, :])
        pairs = moved & same_others & differs
        total = int(pairs.sum())
        agree = int((pairs & (dt == de)).sum())
        out[f"agreement[{axis}]"] = agree / total if total else math.nan
        out[f"pairs[{axis}]"] = total
    defined = {a: out[f"agreement[{a}]"] for a in axes if np.isfinite(out[f"agreement[{a}]"])}
    out["worst"] = min(defined.values()) if defined else math.nan
    out["worst_axis"] = min(defined, key=defined.get) if defined else ""
    return out
