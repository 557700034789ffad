"""Certificates (bounds/certificates.py): kl-inverse against a root finder and scipy's binomial
tail, coverage ≥ 1 − δ by Monte Carlo on a problem whose true error is known in closed form,
and a certificate that tightens as n grows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from clbounds.bounds import certificates as cert


@pytest.mark.parametrize("q, c", [(0.0, 0.01), (0.03, 0.002), (0.1, 0.05), (0.5, 0.3), (0.9, 0.01), (0.2, 0.0)])
def test_kl_inverse_agrees_with_a_root_finder(q, c):
    expected = q if c == 0 else optimize.brentq(lambda p: cert.kl_bernoulli(q, p) - c, q, 1 - 1e-15, xtol=1e-14)
    assert cert.kl_inverse_upper(q, c) == pytest.approx(expected, abs=1e-10)
    assert cert.kl_bernoulli(q, cert.kl_inverse_upper(q, c)) >= c - 1e-9  # rounded up: the bound stays valid


def test_kl_bernoulli_closed_forms_and_edges():
    assert cert.kl_bernoulli(0.3, 0.3) == 0
    assert cert.kl_bernoulli(0.0, 0.25) == pytest.approx(-math.log(0.75), rel=1e-15)
    assert cert.kl_bernoulli(0.5, 0.0) == math.inf and cert.kl_inverse_upper(1.0, 0.1) == 1.0
    assert cert.kl_inverse_upper(0.5, 10.0) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(ValueError):
        cert.kl_bernoulli(1.2, 0.5)


@pytest.mark.parametrize("k, n, delta", [(0, 50, 0.05), (3, 100, 0.05), (40, 400, 0.01), (99, 100, 0.1)])
def test_binomial_tail_bound_is_the_binomial_tail_inversion(k, n, delta):
    b = cert.binomial_tail_bound(k, n, delta)
    assert stats.binom.cdf(k, n, b) == pytest.approx(delta, rel=1e-6)  # P[Bin(n, b) <= k] = δ at the bound
    assert stats.binom.cdf(k, n, b - 1e-6) > delta  # and any smaller p is still plausible
    # the Chernoff relaxation P[Bin(n,p) <= k] <= exp(−n kl(k/n‖p)) is looser
    assert b <= cert.kl_inverse_upper(k / n, math.log(1 / delta) / n) + 1e-12


# ---- a problem with a known true error ----------------------------------------------------
# y ∈ {0, 1} equiprobable, x | y ~ N(2y − 1, 1); h_w(x) = [x > w]. The Gibbs classifier of
# Q = N(μ, s²) over the threshold w errs on class 1 when x < w and on class 0 when x > w:
# e(Q) = ½ Φ((μ − 1)/√(1 + s²)) + ½ (1 − Φ((μ + 1)/√(1 + s²))).

def true_error(mu: float, s: float) -> float:
    r = math.sqrt(1 + s * s)
    return 0.5 * stats.norm.cdf((mu - 1) / r) + 0.5 * stats.norm.sf((mu + 1) / r)


def certificate_on_a_draw(rng: np.random.Generator, n: int, delta: float, delta_mc: float, draws: int = 200, honest: bool = True,
                          per_example: bool = False) -> tuple[float, float]:
    y = rng.integers(0, 2, n)
    x = rng.normal(2 * y - 1, 1.0)
    mu = float((x[y == 1].mean() + x[y == 0].mean()) / 2) if 0 < y.sum() < n else 0.0  # a data-dependent posterior mean
    sigma_p, grid = 1.0, (0.05, 0.2, 0.5)  # prior N(0, 1); the posterior's spread is chosen on S from the grid
    best = None
    for s in grid:
        if per_example:  # one threshold per example: n Monte-Carlo terms (experiments/measurement/certify.py with the encoder)
            draws = n
            mean_error = float(((x > rng.normal(mu, s, n)) != (y == 1)).mean())
        else:
            w = rng.normal(mu, s, draws)
            mean_error = float(((x[None, :] > w[:, None]) != (y[None, :] == 1)).mean())
        kl = cert.gaussian_kl(np.array([mu]), np.array([s]), np.array([0.0]), sigma_p)
        if honest:
            bound = cert.certificate_check(mean_error, draws, kl, n, 2, None, priors=len(grid), delta=delta, delta_mc=delta_mc).bound
        else:  # no complexity term and no Monte-Carlo slack: what a naive "bound" would report
            bound = mean_error
        if best is None or bound < best[0]:
            best = (bound, true_error(mu, s))
    return best


def test_the_certificate_covers_the_true_error_with_probability_at_least_1_minus_delta():
    rng = np.random.default_rng(0)
    delta, delta_mc = 0.2, 0.05
    covered = [b >= e for b, e in (certificate_on_a_draw(rng, 100, delta, delta_mc) for _ in range(300))]
    assert np.mean(covered) >= 1 - delta
    # the test can fail: the empirical error alone does not cover
    naive = [b >= e for b, e in (certificate_on_a_draw(rng, 100, delta, delta_mc, honest=False) for _ in range(300))]
    assert np.mean(naive) < 1 - delta


def test_the_certificate_with_one_draw_per_example_covers_too():
    rng = np.random.default_rng(4)
    delta, delta_mc = 0.2, 0.05
    covered = [b >= e for b, e in (certificate_on_a_draw(rng, 100, delta, delta_mc, per_example=True) for _ in range(300))]
    assert np.mean(covered) >= 1 - delta


def test_the_monte_carlo_bound_with_one_draw_per_example_covers_heterogeneous_means():
    # Z_i ~ Bernoulli(p_i), independent, p_i far from equal: the kl-Chernoff bound of Bin(m, p̄)
    # still covers p̄ (AM–GM, bounds/certificates.py), and the plain mean does not.
    rng = np.random.default_rng(5)
    m, delta_mc = 60, 0.1
    p = np.where(np.arange(m) < m // 2, 0.02, 0.7)
    means = (rng.random((4000, m)) < p).mean(1)
    coverage = np.mean([cert.mc_error_upper(float(z), m, delta_mc) >= p.mean() for z in means])
    assert coverage >= 1 - delta_mc
    assert np.mean(means >= p.mean()) < 1 - delta_mc


def test_the_test_set_bound_covers_at_its_level_and_not_much_more():
    rng = np.random.default_rng(1)
    p, n, delta = 0.16, 100, 0.1
    errors = rng.binomial(n, p, 4000)
    coverage = np.mean([cert.binomial_tail_bound(int(k), n, delta) >= p for k in errors])
    assert 1 - delta <= coverage <= 1 - delta + 0.06  # Clopper–Pearson is conservative, but only a little


def test_the_certificate_tightens_as_n_grows():
    rng = np.random.default_rng(2)
    bounds = [np.mean([certificate_on_a_draw(rng, n, 0.05, 0.01, draws=2000)[0] for _ in range(5)]) for n in (100, 1000, 10000)]
    assert bounds[0] > bounds[1] > bounds[2] and bounds[2] < true_error(0.0, 0.05) + 0.06  # Bayes error 0.159


def test_gaussian_kl_closed_form_and_against_a_sampled_estimate():
    mu_q, s_q, mu_p, s_p = np.array([0.3, -1.0]), np.array([0.5, 2.0]), np.array([0.0, 0.0]), 1.5
    expected = sum(math.log(s_p / s) + (s * s + m * m) / (2 * s_p * s_p) - 0.5 for m, s in zip(mu_q, s_q))
    assert cert.gaussian_kl(mu_q, s_q, mu_p, s_p) == pytest.approx(expected, rel=1e-14)
    rng = np.random.default_rng(3)
    w = rng.normal(mu_q, s_q, (200_000, 2))
    log_ratio = stats.norm.logpdf(w, mu_q, s_q).sum(1) - stats.norm.logpdf(w, mu_p, s_p).sum(1)
    assert log_ratio.mean() == pytest.approx(expected, abs=0.01)
    assert cert.gaussian_kl(mu_p, np.array([s_p, s_p]), mu_p, s_p) == 0.0


def test_every_delta_and_constant_is_reported_with_the_number():
    check = cert.certificate_check(0.1, 1000, 50.0, 5000, 10, 0.09, priors=4)
    inputs = check.details["inputs"]
    assert inputs["delta"] == 0.05 and inputs["delta_mc"] == 0.01 and inputs["delta_pac_bayes_per_prior"] == pytest.approx(0.01)
    assert inputs["kl"] == 50.0 and inputs["n"] == 5000 and inputs["mc_draws"] == 1000 and check.label == "reconstructed"
    assert check.details["ceiling"]["value"] == pytest.approx(0.9) and check.vacuous is False and check.holds
    assert cert.holdout_check(0, 10, 10, 0.0).vacuous is False and cert.holdout_check(9, 10, 10, 0.9).vacuous is True


def test_the_transfer_lower_limit_is_van_elst_and_ghoshdastidars_bound_at_sigma_zero_and_below_it_for_any_sigma():
    """Their code's arithmetic (transfer_bound.Bound, indices 1 and 2, Theorem 3 = the smaller),
    written out independently, at sigma = 0 equals transfer_lower_limit; at any sigma > 0 it is
    larger; the check is vacuous exactly where the limit reaches log K."""
    from clbounds.bounds.certificates import transfer_check, transfer_lower_limit

    def theirs(loss, sigma, tau, m, k):
        d1 = math.log(k / m * math.cosh(1 / tau) ** 2)
        d2 = min(math.log(math.cosh(1) ** 2), tau * math.log(k / m * math.cosh(1 / tau) ** 2)) + math.log(k)
        return min(loss + sigma / tau + d1, tau * loss + sigma + d2)

    for loss, tau, m, k in [(5.55, 0.5, 126, 10), (8.68, 0.5, 126, 10), (1.0, 0.1, 255, 10), (3.0, 1.0, 63, 100), (0.2, 0.2, 8, 2)]:
        limit = transfer_lower_limit(loss, tau, m, k)
        assert limit == pytest.approx(theirs(loss, 0.0, tau, m, k), rel=1e-12)
        assert all(theirs(loss, s, tau, m, k) >= limit for s in (1e-3, 0.1, 1.0, 2.0))
        check = transfer_check(loss, tau, m, k)
        assert check.details["ceiling"]["value"] == pytest.approx(math.log(k))
        if limit >= math.log(k):
            assert check.bound == pytest.approx(limit) and check.vacuous and check.details["lower_limit"]
        else:
            assert check.bound is None and "needs the measured feature spread" in check.details["reason"]
    with pytest.raises(ValueError):
        transfer_lower_limit(1.0, 0.0, 10, 10)
