r"""Huang, Yi & Zhao, "Towards the Generalization of Contrastive Self-Supervised Learning"
(ICLR 2023, arXiv 2111.00743; PAPERS.md §5).

Definitions [paper]. (σ,δ)-augmentation: each class C_k has a main part C_k⁰ with
P(C_k⁰) ≥ σ·P(C_k) and augmented distance ≤ δ inside it. f is L-Lipschitz with ‖f‖ ≤ r;
μ_k = E_{x∈C_k}E_{x'∈A(x)} f(x'); G_f(x) = argmin_k ‖f(x) − μ_k‖; R_ε = P[sup_{x1,x2∈A(x)}
‖f(x1) − f(x2)‖ > ε]; L_align = E‖f(x1) − f(x2)‖²; Δ_μ = 1 − min_k ‖μ_k‖²/r².

Theorem 1 [paper]. If for all ℓ ≠ k

    μ_ℓᵀμ_k < r²(1 − ρ_max − √(2ρ_max) − Δ_μ/2),  ρ_max = 2(1−σ) + R_ε/min_ℓ p_ℓ + σ(Lδ/r + 2ε/r),

then Err(G_f) ≤ (1 − σ) + R_ε.

Theorem 2 [paper form, constant derived here]. R_ε² ≤ η(ε)²·L_align with η(ε) = O(1/ε). The
measured R_ε is the fraction of inputs whose M sampled views span a diameter > ε. If the
diameter exceeds ε then some pair of views is > ε apart (M(M−1)/2 pairs), and also some view
is > ε/2 from the first one (M − 1 pairs, each > ε/2). By the union bound, exchangeability of
the views and Markov's inequality on ‖f(x1) − f(x2)‖²,

    R_ε ≤ c_M·L_align/ε²,   c_M = min(M(M−1)/2, 4(M−1)),

which implies the paper's form with η(ε)² = c_M/ε² because R_ε ≤ 1 (so R_ε² ≤ R_ε). For the
pairwise rate (M = 2, c_M = 1) Markov's inequality holds exactly on the sample.

Theorems 3 and 4 [reconstructed: the error terms τ(σ,δ,ε,R_ε) and τ' are not available].
For k ≠ ℓ,

    InfoNCE (f unit norm):  μ_kᵀμ_ℓ ≤ log(exp{(L2 + τ)/(p_k p_ℓ)} − e^{1−ε}),
    cross-correlation:      μ_kᵀμ_ℓ ≤ √((2/(p_k p_ℓ))·(L2 + τ' − (d − K)/2)).

Both right-hand sides decrease in p_k p_ℓ (for L2 + τ > 0), so the statement for every pair
implies max_{k≠ℓ} μ_kᵀμ_ℓ ≤ RHS(p_min²); that is what is evaluated, at τ = τ' = 0 (the
leading term; τ, τ' ≥ 0 vanish as σ → 1, δ, ε, R_ε → 0). ``details["required_tau"]`` is the
smallest error term for which the measurement satisfies the statement.

Corollaries [paper form]. Theorem 1 with Theorem 2 (η² = c_M/ε², R_ε ≤ min(1, η²L_align) ≤
η√L_align):

    InfoNCE:            Err ≤ (1 − σ) + η(ε)·√(2 + 2·L1),      L_align = 2 + 2L1 for unit f,
    cross-correlation:  Err ≤ (1 − σ) + √2·η(ε)·d^{1/4}·L1^{1/4},   L_align ≤ 2√(d·L1).

Measurement and consistency (experiments/measurement/measure.py). r = 1: f is the L2-normalised backbone
output ("features", no suffix) or the normalised projection ("projection", suffix
``_projection``); Theorem 1 and 2 are evaluated in both spaces (``[projection]``). Each
space's own centres, Δ_μ, R_ε and nearest-centre error are used. L is the Lipschitz constant
of the *normalised* map: by the Dunkl–Williams inequality in inner-product spaces,
‖u/‖u‖ − v/‖v‖‖ ≤ 2‖u − v‖/(‖u‖ + ‖v‖) ≤ ‖u − v‖/min(‖u‖, ‖v‖), so L_f ≤ L_h / min‖h‖ with L_h
the certified product bound of the un-normalised map (``lipschitz_upper``, times
``lipschitz_upper_projector`` for the projection) and min‖h‖ the smallest norm over the test
inputs and their views (an estimate of the minimum over the data). δ is the pixel-L2
threshold of σ(δ) (``sigma_delta``) and ε the R_ε threshold (``misalignment_eps``). The
centres average over augmentations of the training inputs, as in the paper's μ_k. Known
gaps: σ uses a clique on a subset (exact on small classes, greedy otherwise: a lower estimate
of σ), and R_ε uses M sampled views (a lower estimate of the sup).

The Lipschitz constant has two sides, and the centre condition is evaluated at both:
the certified upper bound above (rigorous; it decides ``assumptions_met``) and the measured
lower estimate of the normalised map itself (``lipschitz_lower_normalized``, the largest
‖Δf‖/‖Δx‖ found at adversarial pairs). The true L lies between them and ρ_max grows with L,
so: met at the upper side → met; failed at the lower side → failed whatever L is; otherwise
the Lipschitz gap decides and the hypothesis is undetermined. ``details["lipschitz"]`` says
which case holds.

Vacuity. An error rate and a probability are at most 1, and μ_kᵀμ_ℓ ≤ ‖μ_k‖‖μ_ℓ‖ ≤ r² = 1 for
unit-norm f, so Theorems 1, 2, the corollaries (ceiling 1) and Theorems 3–4 (ceiling r² = 1)
are vacuous when their bound reaches 1.

The tightest Theorem 1 (``theorem1_tightest``). Theorem 1 is deterministic and holds for
every ε > 0 and δ ≥ 0 at once (each pair gives its own hypothesis and bound), so the minimum
of the bound over a grid of (ε, δ) whose hypothesis holds is itself valid, without a
union-bound correction. The grid is the one ``measure`` stores (``misalignment_rate@eps=…``,
``sigma@delta_factor=…`` times ``sigma_delta``); the check reports the minimising pair. L2 and L1 of the InfoNCE split are measured at
temperature 1 (``huang_infonce_L1_unit``/``_L2_unit``), i.e. for unit-norm f as the paper
states them; the cross-correlation terms are those of Barlow Twins' standardised projection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy as sp

from .common import BoundCheck, assumption, error_ceiling, evaluate_registry, make_check, require

sigma, R, p_min, L, delta, eps, r, Delta_mu = sp.symbols(r"\sigma R_{\epsilon} p_{min} L \delta \epsilon r \Delta_{\mu}", real=True)
Err, mu_inner, L_align, c_M, L1, L2, tau_err, d, K = sp.symbols(r"Err \mu_k^T\mu_l L_{align} c_M L_1 L_2 \tau d K", real=True)

RHO_MAX = 2 * (1 - sigma) + R / p_min + sigma * (L * delta / r + 2 * eps / r)
#: Theorem 1's hypothesis on the class centres (for every pair; evaluated at the max pair).
CENTER_CONDITION = sp.StrictLessThan(mu_inner, r**2 * (1 - RHO_MAX - sp.sqrt(2 * RHO_MAX) - Delta_mu / 2))
THEOREM1 = sp.Le(Err, (1 - sigma) + R)
ETA = sp.sqrt(c_M) / eps
THEOREM2 = sp.Le(R, ETA**2 * L_align)
THEOREM3 = sp.Le(mu_inner, sp.log(sp.exp((L2 + tau_err) / p_min**2) - sp.exp(1 - eps)))
THEOREM4 = sp.Le(mu_inner, sp.sqrt(2 / p_min**2 * (L2 + tau_err - (d - K) / 2)))
COROLLARY_INFONCE = sp.Le(Err, (1 - sigma) + ETA * sp.sqrt(2 + 2 * L1))
COROLLARY_BARLOW = sp.Le(Err, (1 - sigma) + sp.sqrt(2) * ETA * d ** sp.Rational(1, 4) * L1 ** sp.Rational(1, 4))
STATEMENT = THEOREM1

ASSUMPTIONS = {
    "center_condition": "max_{k≠l} μ_kᵀμ_l < r²(1 − ρ_max − √(2ρ_max) − Δ_μ/2) (Theorem 1; needed by the corollaries)",
    "positive_l2": "L2 + τ > 0 for Theorem 3 (so that the pairwise bound is largest at p_min²)",
    "defined": "the right-hand side is a real number (log or square root of a positive argument)",
}


def _space(suffix: str) -> tuple[str, dict[str, str]]:
    names = {n: n + suffix for n in ("nearest_center_error", "misalignment_rate", "center_max_inner", "delta_mu", "alignment", "misalignment_rate_pairwise")}
    return ("[projection]" if suffix else ""), names


def _theorem1_terms(suffix: str) -> list[str]:
    _, n = _space(suffix)
    base = [n["nearest_center_error"], "sigma", n["misalignment_rate"], "min_class_probability", "lipschitz_upper", "sigma_delta", "misalignment_eps", n["center_max_inner"], n["delta_mu"]]
    return base + (["lipschitz_upper_projector", "projection_norm_min"] if suffix else ["feature_norm_min"])


def rho_max(sigma_: float, r_eps: float, p_min_: float, lip: float, delta_: float, eps_: float, r_: float = 1.0) -> float:
    """ρ_max(σ, δ, ε) = 2(1−σ) + R_ε/p_min + σ(Lδ/r + 2ε/r) of Theorem 1.

    p_min = 0 (a class without samples in the measured split) gives ρ_max = ∞, so the centre
    condition fails rather than divide by zero; L = ∞ (a zero-norm output) counts only where
    σ·δ > 0.

    Examples:
        >>> rho_max(1.0, 0.0, 0.1, 0.0, 0.0, 0.0)
        0.0
    """
    if not p_min_ > 0:
        return math.inf
    lip_term = lip * delta_ / r_ if sigma_ and delta_ else 0.0  # no 0·∞ = NaN for L = ∞
    return 2 * (1 - sigma_) + r_eps / p_min_ + sigma_ * (lip_term + 2 * eps_ / r_)


def center_condition_rhs(rho: float, delta_mu: float, r_: float = 1.0) -> float:
    """r²(1 − ρ_max − √(2ρ_max) − Δ_μ/2), the ceiling Theorem 1 puts on every μ_kᵀμ_ℓ."""
    return r_**2 * (1 - rho - math.sqrt(2 * rho) - delta_mu / 2)


def _lipschitz(t: Mapping[str, float], suffix: str) -> float:
    """L of the normalised map: L_h / min‖h‖ (Dunkl–Williams), h the un-normalised output."""
    lip_h = t["lipschitz_upper"] * t["lipschitz_upper_projector"] if suffix else t["lipschitz_upper"]
    norm_min = t["projection_norm_min" if suffix else "feature_norm_min"]
    # A zero-norm output has no direction: h/‖h‖ is not Lipschitz near it (L = ∞).
    return lip_h / norm_min if norm_min > 0 else math.inf


PROBABILITY_CEILING = (1.0, "a probability is at most 1")
INNER_CEILING = (1.0, "mu_k^T mu_l <= ||mu_k|| ||mu_l|| <= r^2 = 1 for unit-norm f")


def _center_margin(t: Mapping[str, float], suffix: str, lip: float, sigma_: float | None = None, r_eps: float | None = None,
                   delta_: float | None = None, eps_: float | None = None) -> float:
    """rhs − lhs of the centre condition at Lipschitz constant ``lip`` (other parameters overridable for the grid)."""
    _, n = _space(suffix)
    sig = t["sigma"] if sigma_ is None else sigma_
    rho = rho_max(sig, t[n["misalignment_rate"]] if r_eps is None else r_eps, t["min_class_probability"], lip,
                  t["sigma_delta"] if delta_ is None else delta_, t["misalignment_eps"] if eps_ is None else eps_)
    return center_condition_rhs(rho, t[n["delta_mu"]]) - t[n["center_max_inner"]] if math.isfinite(rho) else -math.inf


def _lipschitz_sides(t: Mapping[str, float], terms: Mapping[str, float], suffix: str, upper: float) -> dict:
    """The centre condition at the certified upper L, the measured lower L and L = 0, and which decides."""
    lower = terms.get("lipschitz_lower_projection_normalized" if suffix else "lipschitz_lower_normalized")
    at = {"certified_upper": upper, "measured_lower": None if lower is None else float(lower)}
    if lower is not None and float(lower) > upper:
        # The "upper" side divides by a minimum norm estimated on the sample, so it can fall
        # below a measured lower estimate: then the lower one is the larger side.
        at["note"] = f"the measured lower L {float(lower):.4g} exceeds the upper side {upper:.4g} (its min-norm is a sample estimate): using the lower as the upper side"
        upper = float(lower)
    margins = {"at_upper": _center_margin(t, suffix, upper), "at_zero": _center_margin(t, suffix, 0.0)}
    if lower is not None:
        margins["at_lower"] = _center_margin(t, suffix, float(lower))
    if margins["at_upper"] > 0:
        decides = "met at the certified upper L, so met for the true L"
    elif margins.get("at_lower", margins["at_zero"]) <= 0:
        side = "measured lower" if lower is not None else "L = 0 (no lower side measured)"
        decides = f"fails at the {side}, so fails for the true L: the Lipschitz gap does not decide it" + ("; it fails even at L = 0" if margins["at_zero"] <= 0 else "")
    else:
        decides = f"undetermined: met at the measured lower L, fails at the certified upper L; the gap upper/lower = {upper / float(lower):.3g} decides it" if lower else "undetermined"
    return {**at, "margins": margins, "decides": decides}


def _center_assumptions(t: Mapping[str, float], suffix: str, terms: Mapping[str, float] | None = None) -> tuple[dict, dict]:
    _, n = _space(suffix)
    lip = _lipschitz(t, suffix)
    rho = rho_max(t["sigma"], t[n["misalignment_rate"]], t["min_class_probability"], lip, t["sigma_delta"], t["misalignment_eps"])
    rhs = center_condition_rhs(rho, t[n["delta_mu"]]) if math.isfinite(rho) else -math.inf
    cond = assumption(t[n["center_max_inner"]], rhs, strict=True, note=f"rho_max={rho:.4g} with L={lip:.4g}")
    cond["margin_if_L_were_0"] = _center_margin(t, suffix, 0.0)
    cond["lipschitz"] = _lipschitz_sides(t, terms if terms is not None else t, suffix, lip)
    inputs = {"sigma": t["sigma"], "R_eps": t[n["misalignment_rate"]], "p_min": t["min_class_probability"], "L": lip, "delta": t["sigma_delta"],
              "eps": t["misalignment_eps"], "r": 1.0, "Delta_mu": t[n["delta_mu"]], "mu_inner": t[n["center_max_inner"]], "rho_max": rho}
    return {"center_condition": cond}, inputs


def _optimism(terms: Mapping[str, float]) -> dict[str, str]:
    """A note when R_ε was estimated with fewer views than its settled budget: R_ε is a rate over
    the pairs of M views, so it grows with M, and a bound built on a smaller M is optimistic."""
    views, settled = terms.get("misalignment_views"), terms.get("misalignment_views_settled")
    if views is None or settled is None or float(views) >= float(settled):
        return {}
    return {"optimistic": f"R_eps from M={float(views):g} views, below the {float(settled):g} at which it settled (docs/estimators.md): "
                          "R_eps grows with M, so this bound is optimistic (too low)"}


def theorem1(terms: Mapping[str, float], suffix: str = "") -> BoundCheck:
    """Theorem 1: under the centre condition, Err(G_f) ≤ (1 − σ) + R_ε [paper]."""
    tag, n = _space(suffix)
    name = "huang2023.theorem1" + tag
    t = require(terms, _theorem1_terms(suffix), name)
    assumptions, inputs = _center_assumptions(t, suffix, terms)
    bound = (1 - t["sigma"]) + t[n["misalignment_rate"]]
    return make_check(name, THEOREM1, bound, t[n["nearest_center_error"]], "paper", assumptions, inputs, *error_ceiling(terms),
                      lipschitz_note="L = certified L_h / min-norm over the test sample (the min over the data is estimated)",
                      lipschitz=assumptions["center_condition"]["lipschitz"], **_optimism(terms))


def _grid(terms: Mapping[str, float], prefix: str) -> dict[float, float]:
    """{parameter: value} of the rows ``<prefix>=<parameter>``."""
    out = {}
    for key, value in terms.items():
        if key.startswith(prefix + "=") and value is not None:
            try:
                out[float(key[len(prefix) + 1 :])] = float(value)
            except ValueError:
                continue
    return out


def theorem1_tightest(terms: Mapping[str, float], suffix: str = "") -> BoundCheck:
    """Theorem 1 at the best (ε, δ) of the measured grid whose centre condition holds [paper; grid here]."""
    tag, n = _space(suffix)
    name = "huang2023.theorem1_tightest" + tag
    t = require(terms, _theorem1_terms(suffix), name)
    eps_grid = _grid(terms, n["misalignment_rate"] + "@eps") | {t["misalignment_eps"]: t[n["misalignment_rate"]]}  # the measured point always in
    sigma_grid = {f * t["sigma_delta"]: v for f, v in _grid(terms, "sigma@delta_factor").items()} | {t["sigma_delta"]: t["sigma"]}
    lip = _lipschitz(t, suffix)
    cells = []
    for e, r_e in sorted(eps_grid.items()):
        for d, sig in sorted(sigma_grid.items()):
            cells.append({"eps": e, "delta": d, "R_eps": r_e, "sigma": sig, "bound": (1 - sig) + r_e,
                          "margin": _center_margin(t, suffix, lip, sigma_=sig, r_eps=r_e, delta_=d, eps_=e)})
    valid = [c for c in cells if c["margin"] > 0]
    # With no valid pair the theorem bounds nothing: report the pair closest to its hypothesis.
    best = min(valid, key=lambda c: (c["bound"], -c["margin"])) if valid else max(cells, key=lambda c: c["margin"])
    cond = {"met": bool(valid), "lhs": t[n["center_max_inner"]], "rhs": t[n["center_max_inner"]] + best["margin"], "margin": best["margin"], "relation": "<",
            "note": f"{len(valid)} of {len(cells)} grid points (eps, delta) meet the centre condition" + ("" if valid else "; the largest margin is shown")}
    inputs = {"sigma": best["sigma"], "R_eps": best["R_eps"], "eps": best["eps"], "delta": best["delta"], "L": lip}
    extra = {} if valid else {"reason": f"no (eps, delta) of the grid meets the centre condition (largest margin {best['margin']:.4g} at eps={best['eps']:g}, delta={best['delta']:.4g}): the theorem gives no bound"}
    return make_check(name, THEOREM1, best["bound"] if valid else None, t[n["nearest_center_error"]], "paper", {"center_condition": cond}, inputs, *error_ceiling(terms),
                      grid=cells, attained_at={"eps": best["eps"], "delta": best["delta"]},
                      note="minimum over the (eps, delta) grid; Theorem 1 holds for every pair at once, so no union-bound correction", **extra, **_optimism(terms))


def _eta_sq(t: Mapping[str, float]) -> float:
    """η(ε)² = c_M/ε² of Theorem 2; ε = 0 (every positive distance counts) has no Markov bound."""
    e = t["misalignment_eps"]
    if not e > 0:
        raise ValueError(f"misalignment_eps must be > 0 for Theorem 2's Markov bound, got {e}")
    return _c_m(t["misalignment_views"]) / e**2


def _c_m(views: float) -> float:
    m = int(round(views))
    if m < 2:
        raise ValueError(f"R_eps needs M >= 2 views, got {views}")
    return float(min(m * (m - 1) // 2, 4 * (m - 1)))


def theorem2(terms: Mapping[str, float], suffix: str = "") -> BoundCheck:
    """Theorem 2: R_ε ≤ c_M·L_align/ε² (implies R_ε² ≤ η²L_align) [paper form, constant derived]."""
    tag, n = _space(suffix)
    name = "huang2023.theorem2" + tag
    t = require(terms, [n["misalignment_rate"], n["alignment"], "misalignment_eps", "misalignment_views"], name)
    eta_sq = _eta_sq(t)
    c = _c_m(t["misalignment_views"])
    e = t["misalignment_eps"]
    bound = eta_sq * t[n["alignment"]]
    extra = {}
    pair = terms.get(n["misalignment_rate_pairwise"])
    if pair is not None:  # Markov on the same pairs: exact on the sample
        extra["pairwise"] = {"R_pair": float(pair), "bound": t[n["alignment"]] / e**2, "holds": float(pair) <= t[n["alignment"]] / e**2 + 1e-12}
    inputs = {"R_eps": t[n["misalignment_rate"]], "L_align": t[n["alignment"]], "eps": e, "c_M": c, "eta": math.sqrt(c) / e}
    return make_check(name, THEOREM2, bound, t[n["misalignment_rate"]], "paper", {}, inputs, *PROBABILITY_CEILING, **extra)


def _no_class_check(name: str, statement: sp.Basic, t: Mapping[str, float]) -> BoundCheck:
    """Theorems 3–4 divide by p_min²: with a class without samples they give no bound."""
    p = t["min_class_probability"]
    return make_check(name, statement, None, t["center_max_inner_projection"], "reconstructed",
                      {"class_present": assumption(0.0, p, strict=True, note="every class needs samples: min_k p_k > 0")},
                      {"p_min": p}, *INNER_CEILING, reason="min_class_probability = 0: a class has no samples, and the statement divides by p_min²")


def theorem3(terms: Mapping[str, float]) -> BoundCheck:
    """Theorem 3 (InfoNCE), leading term τ = 0, unit-norm projection [reconstructed]."""
    name = "huang2023.theorem3"
    t = require(terms, ["center_max_inner_projection", "huang_infonce_L2_unit", "min_class_probability", "misalignment_eps"], name)
    pp, l2, e, mu = t["min_class_probability"] ** 2, t["huang_infonce_L2_unit"], t["misalignment_eps"], t["center_max_inner_projection"]
    if not pp > 0:
        return _no_class_check(name, THEOREM3, t)
    a = l2 / pp
    bound = a + math.log1p(-math.exp(1 - e - a)) if a > 1 - e else None
    # The smallest τ for which mu ≤ log(exp((L2 + τ)/pp) − e^{1−ε}).
    required = pp * (max(mu, 1 - e) + math.log1p(math.exp(-abs(mu - (1 - e))))) - l2
    assumptions = {"positive_l2": assumption(0.0, l2, strict=True), "defined": assumption(1 - e, a, strict=True, note="exp((L2+τ)/p²) > e^{1−ε} at τ = 0")}
    return make_check(name, THEOREM3, bound, mu, "reconstructed", assumptions,
                      {"mu_inner": mu, "L2": l2, "p_min": t["min_class_probability"], "eps": e, "tau": 0.0}, *INNER_CEILING, required_tau=required,
                      reason=None if bound is not None else "log of a non-positive number at τ = 0: the leading term gives no bound")


def theorem4(terms: Mapping[str, float]) -> BoundCheck:
    """Theorem 4 (cross-correlation), leading term τ' = 0, normalised projection centres [reconstructed]."""
    name = "huang2023.theorem4"
    t = require(terms, ["center_max_inner_projection", "huang_barlow_L2", "min_class_probability", "embedding_dim", "num_classes"], name)
    pp, l2, mu = t["min_class_probability"] ** 2, t["huang_barlow_L2"], t["center_max_inner_projection"]
    if not pp > 0:
        return _no_class_check(name, THEOREM4, t)
    arg = 2 / pp * (l2 - (t["embedding_dim"] - t["num_classes"]) / 2)
    bound = math.sqrt(arg) if arg >= 0 else None
    required = pp * max(mu, 0.0) ** 2 / 2 - l2 + (t["embedding_dim"] - t["num_classes"]) / 2
    defined = assumption(0.0, arg, note="L2 + τ' − (d − K)/2 ≥ 0 at τ' = 0")
    defined["met"] = arg >= 0  # the root's own domain, without rounding slack: met exactly when the bound exists
    assumptions = {"defined": defined}
    return make_check(name, THEOREM4, bound, mu, "reconstructed", assumptions,
                      {"mu_inner": mu, "L2": l2, "p_min": t["min_class_probability"], "d": t["embedding_dim"], "K": t["num_classes"], "tau": 0.0},
                      *INNER_CEILING, required_tau=required, reason=None if bound is not None else "square root of a negative number at τ' = 0: the leading term gives no bound")


def _corollary(terms: Mapping[str, float], name: str, statement: sp.Basic, l1_term: str, barlow: bool) -> BoundCheck:
    extra_terms = [l1_term, "misalignment_views"] + (["embedding_dim"] if barlow else [])
    t = require(terms, _theorem1_terms("_projection") + extra_terms, name)
    assumptions, inputs = _center_assumptions(t, "_projection", terms)
    eta = math.sqrt(_eta_sq(t))
    l1 = t[l1_term]
    if barlow:
        bound = (1 - t["sigma"]) + math.sqrt(2) * eta * t["embedding_dim"] ** 0.25 * max(l1, 0.0) ** 0.25
        space = "L_align <= 2 sqrt(d L1) holds for the batch-standardised projection; the error is that of the normalised projection"
    else:
        bound = (1 - t["sigma"]) + eta * math.sqrt(max(2 + 2 * l1, 0.0))
        space = "L1 at temperature 1 on the normalised projection: 2 + 2 L1 = L_align of that space"
    inputs.update({"L1": l1, "c_M": eta**2 * t["misalignment_eps"] ** 2, "eta": eta})
    if barlow:
        inputs["d"] = t["embedding_dim"]
    return make_check(name, statement, bound, t["nearest_center_error_projection"], "paper", assumptions, inputs, *error_ceiling(terms), space=space)


def corollary_infonce(terms: Mapping[str, float]) -> BoundCheck:
    """InfoNCE corollary: Err ≤ (1 − σ) + η(ε)√(2 + 2L1), projection space [paper]."""
    return _corollary(terms, "huang2023.corollary_infonce", COROLLARY_INFONCE, "huang_infonce_L1_unit", barlow=False)


def corollary_barlow(terms: Mapping[str, float]) -> BoundCheck:
    """Cross-correlation corollary: Err ≤ (1 − σ) + √2·η(ε)·d^{1/4}·L1^{1/4}, projection space [paper]."""
    return _corollary(terms, "huang2023.corollary_barlow", COROLLARY_BARLOW, "huang_barlow_L1", barlow=True)


THEOREMS = {
    "huang2023.theorem1": (THEOREM1, "paper", lambda t: theorem1(t)),
    "huang2023.theorem1[projection]": (THEOREM1, "paper", lambda t: theorem1(t, "_projection")),
    "huang2023.theorem1_tightest": (THEOREM1, "paper", lambda t: theorem1_tightest(t)),
    "huang2023.theorem1_tightest[projection]": (THEOREM1, "paper", lambda t: theorem1_tightest(t, "_projection")),
    "huang2023.theorem2": (THEOREM2, "paper", lambda t: theorem2(t)),
    "huang2023.theorem2[projection]": (THEOREM2, "paper", lambda t: theorem2(t, "_projection")),
    "huang2023.theorem3": (THEOREM3, "reconstructed", theorem3),
    "huang2023.theorem4": (THEOREM4, "reconstructed", theorem4),
    "huang2023.corollary_infonce": (COROLLARY_INFONCE, "paper", corollary_infonce),
    "huang2023.corollary_barlow": (COROLLARY_BARLOW, "paper", corollary_barlow),
}
#: The controls each check is evaluated on (bounds/common.CONTROLS): random initialisation,
#: with and without its BatchNorm statistics recalibrated, for all; shuffled labels where the
#: labels enter (class centres, σ, the error). Theorem 2 reads no label.
CONTROLS = {name: ("random_init", "random_init_bn") + (() if "theorem2" in name else ("shuffled_labels",)) for name in THEOREMS}
REQUIRED_TERMS = sorted(
    set(_theorem1_terms("")) | set(_theorem1_terms("_projection"))
    | {"alignment", "alignment_projection", "misalignment_views", "huang_infonce_L1_unit", "huang_infonce_L2_unit", "huang_barlow_L1", "huang_barlow_L2",
       "embedding_dim", "num_classes", "center_max_inner_projection"}
)


def evaluate(terms: Mapping[str, float]) -> BoundCheck:
    """Theorem 1 on the normalised backbone features, the paper's main result."""
    return theorem1(terms)


def evaluate_all(terms: Mapping[str, float]) -> list[BoundCheck]:
    """Every theorem and corollary in both spaces; unmeasured ones are reported as missing."""
    return evaluate_registry(THEOREMS, terms)
