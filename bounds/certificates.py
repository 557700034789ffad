r"""Certified bounds on the downstream error: the tightness reference for every paper's bound.

None of the five papers computes a numeric bound; the ones clbounds evaluates are vacuous or
hold by construction. This module is the arithmetic of three certificates that are not,
torch-free (the posterior is optimised in ``experiments/measurement/certify.py``). Every δ is accounted
for in one union bound, and every constant is returned with the number.

**Test-set bound** (Langford 2005, Theorem 3.3; the binomial tail inversion, i.e. the
Clopper–Pearson upper limit). For a classifier fixed before the n held-out samples are
drawn, with k errors among them, with probability ≥ 1 − δ

    e ≤ B̄in(k, n, δ) = max{p : P[Bin(n, p) ≤ k] ≥ δ} = Beta⁻¹(1 − δ; k + 1, n − k).

This is the floor any certificate is compared with: it spends held-out samples instead of
training samples, and needs no complexity term.

**PAC-Bayes-kl bound** (Seeger 2002; Maurer 2004, Theorem 5). For a prior P chosen before
the sample S of n i.i.d. examples is drawn, with probability ≥ 1 − δ, for every posterior Q
at once,

    kl(ê_S(Q) ‖ e(Q)) ≤ (KL(Q ‖ P) + ln(2√n / δ)) / n,

with kl(q‖p) = q ln(q/p) + (1 − q) ln((1 − q)/(1 − p)) the Bernoulli divergence, e(Q) the
error of the Gibbs classifier (draw h ~ Q per prediction) and ê_S(Q) its empirical error on S.
Hence e(Q) ≤ kl⁻¹(ê_S(Q), ·), the largest p ≥ ê_S(Q) with kl(ê_S(Q)‖p) ≤ the right side.

**Monte-Carlo estimate of ê_S(Q)** (Langford & Caruana 2001; Dziugaite & Roy 2017, §3).
ê_S(Q) is an expectation over h ~ Q; with m independent draws h_1..h_m and their mean
empirical error ê_m (each draw evaluated on all of S, so the m terms are i.i.d. in [0, 1]
given S), with probability ≥ 1 − δ'

    ê_S(Q) ≤ kl⁻¹(ê_m, ln(2/δ') / m).

The same holds with one draw per example (h_i ~ Q for example i, m = n terms): the Z_i =
1[h_i(x_i) ≠ y_i] are independent Bernoulli(p_i) given S with mean p̄ = ê_S(Q), and
E exp(λ Σ Z_i) = Π (1 − p_i + p_i e^λ) ≤ (1 − p̄ + p̄ e^λ)^m by the AM–GM inequality, so
every Chernoff bound of Bin(m, p̄) applies. With r draws per example (m = r·n terms, each
example's p_i appearing r times) the mean of the probabilities is still ê_S(Q), so the same
holds with m = r·n. This is how the posterior over an encoder's
weights is estimated: a pass over S costs one batched forward instead of one per draw.

**Union bound.** The prior's variance is picked from a grid of G values after seeing S (the
best certificate is reported), so each prior gets δ_PB / G. The Monte-Carlo step gets δ'
once: the choice among the G candidates is made on draws of its own, and the reported
certificate's Monte-Carlo estimate comes from fresh draws of the chosen posterior, which
are independent of the choice. With δ_PB + δ' = δ, the reported certificate holds with
probability ≥ 1 − δ over S and the draws. The defaults split δ = 0.05 as δ' = 0.01 and
δ_PB = 0.04 (as Dziugaite & Roy).

**Data-dependent prior** (Pérez-Ortiz et al. 2021). The prior's mean is learnt on data that
S is independent of: in clbounds, the encoder (trained without labels on the training
split) and the linear probe fitted on the training split; S is a fresh sample (see
``experiments/measurement/certify.py``). A component the prior fixes exactly and the posterior keeps (a
point mass on the encoder's weights) adds 0 to KL(Q‖P).

**Diagonal Gaussians.** KL(N(μ_q, diag σ_q²) ‖ N(μ_p, diag σ_p²))
= ½ Σ_i [σ_q,i²/σ_p,i² + (μ_q,i − μ_p,i)²/σ_p,i² − 1 + ln(σ_p,i²/σ_q,i²)].

Example:
    >>> round(kl_inverse_upper(0.1, 0.05), 4)
    0.2201
    >>> round(binomial_tail_bound(10, 1000, 0.05), 4)
    0.0169
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp
from scipy import stats

from .common import BoundCheck, make_check

__all__ = ["DELTA", "DELTA_MC", "certificate_check", "contrastive_certificate_check", "gaussian_kl", "kl_bernoulli", "kl_inverse_upper", "mc_error_upper",
           "pac_bayes_kl_bound", "binomial_tail_bound", "holdout_check", "transfer_check",
           "transfer_lower_limit"]

DELTA = 0.05  # the total failure probability of a certificate
DELTA_MC = 0.01  # the part spent on the Monte-Carlo estimate of the posterior's empirical error


def kl_bernoulli(q: float, p: float) -> float:
    """kl(q ‖ p) between Bernoulli(q) and Bernoulli(p), in nats (0 ln 0 = 0).

    Examples:
        >>> kl_bernoulli(0.5, 0.5), round(kl_bernoulli(0.0, 0.5), 6)
        (0.0, 0.693147)
    """
    if not (0.0 <= q <= 1.0 and 0.0 <= p <= 1.0):
        raise ValueError(f"q and p must lie in [0, 1], got {q} and {p}")
    out = 0.0
    if q > 0:
        out += math.inf if p == 0 else q * math.log(q / p)
    if q < 1:
        out += math.inf if p == 1 else (1 - q) * math.log((1 - q) / (1 - p))
    return out


def kl_inverse_upper(q: float, c: float, tol: float = 1e-12) -> float:
    """The largest p in [q, 1] with kl(q ‖ p) ≤ c, by bisection (kl(q‖·) increases on [q, 1]).

    Examples:
        >>> round(kl_inverse_upper(0.0, math.log(2)), 9)  # kl(0‖p) = −ln(1 − p)
        0.5
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    if not c >= 0 or math.isnan(c):
        raise ValueError(f"c must be >= 0, got {c}")
    if q == 1.0 or kl_bernoulli(q, 1.0) <= c:
        return 1.0
    if c == 0:
        return q
    low, high = q, 1.0
    while high - low > tol:
        mid = (low + high) / 2
        if kl_bernoulli(q, mid) > c:
            high = mid
        else:
            low = mid
    return high  # kl(q‖high) ≥ c up to tol: rounding up keeps the bound valid


def binomial_tail_bound(errors: int, n: int, delta: float = DELTA) -> float:
    """Langford's test-set bound: the Clopper–Pearson upper limit of the error of a classifier
    fixed before the n held-out samples, given ``errors`` of them wrong (probability ≥ 1 − δ).

    Examples:
        >>> binomial_tail_bound(0, 100, 0.05) == 1 - 0.05 ** (1 / 100)  # (1 − p)^n = δ
        True
    """
    if not (0 <= errors <= n and n >= 1):
        raise ValueError(f"need 0 <= errors <= n and n >= 1, got errors={errors}, n={n}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if errors == n:
        return 1.0
    if errors == 0:  # the closed form: (1 − p)^n = δ
        return 1.0 - delta ** (1.0 / n)
    return float(stats.beta.ppf(1.0 - delta, errors + 1, n - errors))


def mc_error_upper(mean_error: float, draws: int, delta: float = DELTA_MC) -> float:
    """Upper bound on the posterior's empirical error ê_S(Q) from ``draws`` sampled classifiers
    with mean empirical error ``mean_error`` (Langford & Caruana 2001), probability ≥ 1 − δ."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    return kl_inverse_upper(mean_error, math.log(2.0 / delta) / draws)


def pac_bayes_kl_bound(empirical_error: float, kl: float, n: int, delta: float) -> float:
    """Seeger/Maurer: e(Q) ≤ kl⁻¹(ê_S(Q), (KL(Q‖P) + ln(2√n/δ)) / n), probability ≥ 1 − δ."""
    if kl < 0 or n < 1:
        raise ValueError(f"need KL >= 0 and n >= 1, got KL={kl}, n={n}")
    return kl_inverse_upper(empirical_error, (kl + math.log(2.0 * math.sqrt(n) / delta)) / n)


def gaussian_kl(mu_q: np.ndarray, sigma_q: np.ndarray, mu_p: np.ndarray, sigma_p: np.ndarray | float) -> float:
    """KL(N(μ_q, diag σ_q²) ‖ N(μ_p, diag σ_p²)) in nats, summed over coordinates (float64)."""
    mu_q, sigma_q, mu_p = (np.asarray(a, dtype=np.float64) for a in (mu_q, sigma_q, mu_p))
    var_p = np.broadcast_to(np.asarray(sigma_p, dtype=np.float64) ** 2, mu_q.shape)
    var_q = sigma_q**2
    if np.any(var_q <= 0) or np.any(var_p <= 0):
        raise ValueError("standard deviations must be > 0")
    ratio = var_q / var_p
    # x − 1 − ln x ≥ 0 term by term; expm1/log1p keep it so when σ_q ≈ σ_p (rounding made it −1e-28)
    return max(0.0, float(0.5 * np.sum((mu_q - mu_p) ** 2 / var_p + (np.expm1(np.log(ratio)) - np.log1p(ratio - 1.0)))))


_e, _q, _kl, _n, _d = sp.symbols(r"e_Q \hat{e}_S(Q) \mathrm{KL}(Q\|P) n \delta", positive=True)
PAC_BAYES_STATEMENT = sp.Le(_e, sp.Function(r"\mathrm{kl}^{-1}")(_q, (_kl + sp.log(2 * sp.sqrt(_n) / _d)) / _n))
_k = sp.Symbol("k", nonnegative=True)
TEST_SET_STATEMENT = sp.Le(sp.Symbol("e"), sp.Function(r"\overline{\mathrm{Bin}}")(_k, _n, _d))


def _error_ceiling(num_classes: int, trivial_error: float | None) -> tuple[float, str]:
    """What a trivial predictor attains: the error of always predicting the most frequent training
    class where it was measured, else the chance error 1 − 1/K (equal for balanced classes)."""
    if trivial_error is not None:
        return float(trivial_error), "the error of always predicting the most frequent training class, the trivial predictor"
    return 1.0 - 1.0 / num_classes, f"chance error 1 - 1/K of random guessing, K={num_classes} (the trivial predictor's error was not measured)"


def certificate_check(draws_mean_error: float, draws: int, kl: float, n: int, num_classes: int, measured_error: float | None,
                      priors: int = 1, delta: float = DELTA, delta_mc: float = DELTA_MC, theorem: str = "certificate.pac_bayes_downstream",
                      trivial_error: float | None = None, **details: Any) -> BoundCheck:
    """The PAC-Bayes certificate on the Gibbs classifier's error, every δ in one union bound.

    ``draws_mean_error``: the mean empirical error on S of ``draws`` posterior samples;
    ``kl``: KL(Q‖P) of the reported prior; ``priors``: how many priors the best was chosen
    from; ``measured_error``: the posterior's error on held-out data (the quantity bounded).
    ``theorem`` names what the posterior covers (``certificate.pac_bayes_encoder_probe`` when
    the encoder's weights are random too). Vacuous at or above ``trivial_error``, the error of
    always predicting the most frequent training class (1 − 1/K when not given).
    """
    if not 0 < delta_mc < delta < 1:
        raise ValueError(f"need 0 < delta_mc < delta < 1, got {delta_mc} and {delta}")
    delta_pb = (delta - delta_mc) / priors
    empirical_upper = mc_error_upper(draws_mean_error, draws, delta_mc)
    bound = pac_bayes_kl_bound(empirical_upper, kl, n, delta_pb)
    inputs = {"mc_mean_error": draws_mean_error, "mc_draws": draws, "empirical_error_upper": empirical_upper, "kl": kl, "n": n,
              "delta": delta, "delta_mc": delta_mc, "delta_pac_bayes_per_prior": delta_pb, "priors": priors,
              "complexity": (kl + math.log(2.0 * math.sqrt(n) / delta_pb)) / n}
    ceiling, note = _error_ceiling(num_classes, trivial_error)
    return make_check(theorem, PAC_BAYES_STATEMENT, bound, measured_error, "reconstructed", inputs=inputs, ceiling=ceiling, ceiling_note=note, **details)


_R, _lo, _hi, _u = sp.symbols(r"R_B(Q) L_{\min} L_{\max} u", positive=True)
CONTRASTIVE_STATEMENT = sp.Le(_R, _lo + (_hi - _lo) * sp.Function(r"\mathrm{kl}^{-1}")(sp.Symbol(r"\hat{r}_S(Q)"), (_kl + sp.log(2 * sp.sqrt(_u) / _d)) / _u))


def contrastive_certificate_check(unit_mean_loss: float, units: int, kl: float, low: float, high: float, measured_loss: float | None,
                                  priors: int = 1, delta: float = DELTA, delta_mc: float = DELTA_MC, constant: float | None = None,
                                  theorem: str = "certificate.pac_bayes_contrastive", **details: Any) -> BoundCheck:
    r"""A PAC-Bayes-kl certificate on the contrastive risk of a Gibbs encoder [reconstructed].

    The rigorous form of the i.i.d.-block certificate of van Elst & Ghoshdastidar (arXiv
    2412.03486; their ``iid_kl_bound``), with the Monte-Carlo step and the union bounds their
    code leaves out. Derivation:

    - *Units.* R_B(θ) is the expected NT-Xent loss of a batch of B i.i.d. inputs with
      independent augmentations. S is split into u disjoint batches; the batches, with their
      views, are i.i.d. units, so the PAC-Bayes-kl theorem (Maurer 2004) applies with n = u
      to the per-unit loss ℓ(θ, batch).
    - *Bounded.* On normalised embeddings each anchor's loss lies in [L_min, L_max] =
      [log(1 + M e^{−2/τ}), log(1 + M e^{2/τ})], M = 2B − 2 (theory.shift.infonce_range), and
      so does the batch mean; (ℓ − L_min)/(L_max − L_min) ∈ [0, 1].
    - *Monte Carlo.* One posterior draw θ_i per unit: given S, the u values are independent,
      in [0, 1], and their mean has expectation r̂_S(Q), the posterior's empirical risk.
      Hoeffding's kl form for independent (not identically distributed) bounded variables
      gives r̂_S(Q) ≤ kl⁻¹(mean, ln(2/δ')/u) with probability ≥ 1 − δ'.
    - *PAC-Bayes.* r(Q) ≤ kl⁻¹(that, (KL(Q‖P) + ln(2√u/δ_P))/u), δ_P = (δ − δ')/priors.

    Hence R_B(Q) ≤ L_min + (L_max − L_min)·(that bound) with probability ≥ 1 − δ. The
    ceiling is ``constant``, the risk of a constant encoder, log(2B − 1) (every logit equal): a
    certificate at or above it says less than collapsing the encoder. Without it, L_max (any
    encoder's risk lies below it). ``theorem`` names where S comes from
    (``certificate.pac_bayes_contrastive_train_sample`` when S is part of the training split).
    """
    if not high > low:
        raise ValueError(f"need L_max > L_min, got {low} and {high}")
    if not 0 < delta_mc < delta < 1:
        raise ValueError(f"need 0 < delta_mc < delta < 1, got {delta_mc} and {delta}")
    normalised = min(max((unit_mean_loss - low) / (high - low), 0.0), 1.0)
    delta_pb = (delta - delta_mc) / priors
    empirical_upper = mc_error_upper(normalised, units, delta_mc)
    bound = low + (high - low) * pac_bayes_kl_bound(empirical_upper, kl, units, delta_pb)
    inputs = {"unit_mean_loss": unit_mean_loss, "units": units, "kl": kl, "loss_low": low, "loss_high": high,
              "empirical_risk_upper_normalised": empirical_upper, "delta": delta, "delta_mc": delta_mc,
              "delta_pac_bayes_per_prior": delta_pb, "priors": priors}
    ceiling, note = ((constant, "log(2B-1), the NT-Xent risk of a constant encoder: the trivial encoder's") if constant is not None
                     else (high, "L_max = log(1 + (2B-2) e^(2/tau)), the largest NT-Xent of normalised embeddings"))
    return make_check(theorem, CONTRASTIVE_STATEMENT, bound, measured_loss, "reconstructed", inputs=inputs,
                      ceiling=ceiling, ceiling_note=note, **details)


_L, _sig, _tau, _M, _K = sp.symbols(r"L_{cont} \sigma \tau M K", positive=True)
_DELTA_BAO = sp.log(_K / _M * sp.cosh(1 / _tau) ** 2)
TRANSFER_STATEMENT = sp.Le(sp.Symbol(r"L_{CE}"), sp.Min(_L + _sig / _tau + _DELTA_BAO,
                                                        _tau * _L + _sig + sp.Min(sp.log(sp.cosh(1) ** 2), _tau * _DELTA_BAO) + sp.log(_K)))


def transfer_lower_limit(contrastive_bound: float, tau: float, negatives: int, num_classes: int) -> float:
    r"""The smallest value van Elst & Ghoshdastidar's transfer bound can take on a certified
    contrastive risk: their Theorem 3 with the feature spread σ = 0.

    Their code (``transfer_bound.py``, the notebook's step 7) bounds the cross-entropy of the
    downstream linear classifier by the smaller of Bao et al.'s form and their own,

        L_CE ≤ min(L + σ/τ + Δ,  τL + σ + min(log cosh²(1), τΔ) + log K),   Δ = log(K/M · cosh²(1/τ)),

    with L the contrastive risk, σ ≥ 0 the mean distance of the normalised embeddings to their
    class means, M the negatives and K the classes. Both forms increase in σ, so σ = 0 gives a
    value no σ can go below: where it is already at or above log K (the cross-entropy of equal
    logits) the transfer is vacuous whatever σ is. For a Gibbs encoder Q the bound's right side
    is a minimum of two functions affine in (L, σ), so E_Q of it is at most its value at E_Q L,
    which the certificate bounds. [reconstructed: the statement is taken from
    their code; PAPERS.md gives none, and their loss has M = B − 1 negatives where NT-Xent has
    2B − 2, so the caller passes NT-Xent's, the value that makes the limit lowest.]

    Examples:
        >>> round(transfer_lower_limit(5.0, 0.5, 126, 10), 4)  # τL + τΔ + log K
        4.8607
    """
    if not (tau > 0 and negatives >= 1 and num_classes >= 2):
        raise ValueError(f"need tau > 0, negatives >= 1 and num_classes >= 2, got {tau}, {negatives}, {num_classes}")
    delta = math.log(num_classes / negatives * math.cosh(1 / tau) ** 2)
    bao = contrastive_bound + delta
    theirs = tau * contrastive_bound + min(math.log(math.cosh(1.0) ** 2), tau * delta) + math.log(num_classes)
    return min(bao, theirs)


def transfer_check(contrastive_bound: float, tau: float, negatives: int, num_classes: int, theorem: str = "certificate.transfer_van_elst",
                   **details: Any) -> BoundCheck:
    """van Elst & Ghoshdastidar's transfer (``transfer_lower_limit``) from a certified contrastive
    risk to the downstream cross-entropy, judged against log K. Where the limit at σ = 0 is at or
    above log K the bound is reported as that limit and is vacuous; below it the check needs σ
    and is not evaluated (the reason says so)."""
    limit = transfer_lower_limit(contrastive_bound, tau, negatives, num_classes)
    ceiling = math.log(num_classes)
    decided = limit >= ceiling
    extra = {} if decided else {"reason": f"the transfer at sigma = 0 is {limit:.4g}, below log K = {ceiling:.4g}: it needs the measured feature spread sigma"}
    return make_check(theorem, TRANSFER_STATEMENT, limit if decided else None, None, "reconstructed",
                      inputs={"contrastive_bound": contrastive_bound, "tau": tau, "negatives": negatives, "num_classes": num_classes, "sigma": 0.0},
                      ceiling=ceiling, ceiling_note="log K, the cross-entropy of equal logits (the constant classifier's)", lower_limit=True,
                      **extra, **details)


def holdout_check(errors: int, n: int, num_classes: int, measured_error: float | None, delta: float = DELTA, theorem: str = "certificate.test_set",
                  trivial_error: float | None = None, **details: Any) -> BoundCheck:
    """Langford's test-set bound (Clopper–Pearson) on a classifier fixed before its n held-out
    samples; vacuous at or above ``trivial_error`` (1 − 1/K when not given)."""
    bound = binomial_tail_bound(errors, n, delta)
    ceiling, note = _error_ceiling(num_classes, trivial_error)
    return make_check(theorem, TEST_SET_STATEMENT, bound, measured_error, "paper",
                      inputs={"errors": errors, "n": n, "delta": delta}, ceiling=ceiling, ceiling_note=note, **details)
