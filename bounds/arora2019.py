r"""Arora, Khandeparkar, Khodak, Plevrakis & Saunshi 2019, "A Theoretical Analysis of
Contrastive Unsupervised Representation Learning" (ICML 2019, arXiv 1902.09229), the common
ancestor of the papers (PAPERS.md §6). Lemma 4.3 (one negative) [paper] and its
M-negative form (the structure of the paper's §6.1, derived here with explicit constants)
[reconstructed].

Setting. Classes c ~ p; an ideal positive pair is two independent draws x, x⁺ ~ D_c; each
negative is an independent draw of the marginal, so its class collides with the anchor's
with probability p_c. ℓ(v) = log(1 + Σ_i e^{−v_i}) (natural log; the paper writes log₂, which
only rescales both losses by 1/log 2 and turns ℓ(0) = log 2 into 1).

Derivation (every constant). For any representation f,

    L_un^M(f) = E ℓ({f(x)ᵀ(f(x⁺) − f(x_i⁻))}_i)
             ≥ E_{classes} E_{x~D_{c⁺}} ℓ({f(x)ᵀ(μ_{c⁺} − μ_{c_i})}_i)            (1)

by Jensen: ℓ is convex and the argument is affine in (f(x⁺), f(x_1⁻), …), whose conditional
means given x and the classes are the class means μ_c = E_{D_c} f (this is where the *true*
means of the *same* f, and independent positives and negatives, are needed). Split (1) on
the event that some negative class equals c⁺ (probability τ_M = Σ_c p_c(1 − (1 − p_c)^M)):

- no collision: ℓ over M terms ≥ ℓ over the *set* Q of distinct negative classes (dropping
  repeated positive terms lowers the sum), which is the mean-classifier loss of the task
  {c⁺} ∪ Q; its conditional mean is L_sup^{μ,M}(f);
- collision with J ≥ 1 draws: each colliding term is e^{−0} = 1 and the others are > 0, so
  ℓ ≥ log(1 + J); its mean is γ_M = Σ_c p_c E_{J~Bin(M, p_c)} log(1 + J).

Hence L_un^M ≥ (1 − τ_M)·L_sup^{μ,M} + γ_M, i.e.

    L_sup^{μ,M}(f) ≤ (L_un^M(f) − γ_M) / (1 − τ_M),        for τ_M < 1.

For M = 1: τ_1 = τ = Σ p_c² and γ_1 = τ·log 2, the paper's Lemma 4.3
L_sup^μ ≤ (L_un − τ)/(1 − τ) in log₂ units.

Measurement (experiments/measurement/measure.py, group "bounds"): f = z/‖z‖/√τ_temp, the normalised
projection scaled by 1/√τ_temp, so that f(x)ᵀf(x') = cos/τ_temp are the logits of the
trained InfoNCE. Both sides are computed on the empirical distribution D̂ of the measured
test sample (positives: independent draws of the anchor's class from it; negatives: draws
from it; μ̂_c: its class means; p̂: its class frequencies). The inequality holds *exactly* on
D̂ for M = 1 (both sides are exact sums), so a violation there would be a bug; for M > 1 both
sides are Monte-Carlo estimates whose standard errors are in ``details``. The gap to the
population statement is the plug-in error of D̂ (positives equal the anchor with
probability 1/n_c).

Holds by construction. On D̂ the one-negative inequality is Jensen's inequality on the
sample's own class means, so it holds for *any* embedding: the controls (random
initialisation, shuffled labels) show it, and the check reports "holds by construction". Its
informative content is its tightness. The diagnostic ``arora2019.one_negative_practical``
puts the loss training actually minimises, with *augmentation* positives
(``arora_unsupervised_loss_practical``), in place of the ideal L_un: that is not a theorem
(Arora et al. need independent same-class positives), so it can fail, and where it fails the
difference is the positive-pair shift of SSA-CLR (PAPERS.md §2).

Vacuity. A constant encoder (every logit 0) attains log(1 + |Q|) on a task of |Q| negative
classes: log 2 with one negative, and its mean over the tasks with M negatives
(``arora_constant_encoder_loss_M``, measured with the same draws). That is the trivial
predictor's loss, and a bound at or above it is vacuous. Stores without those terms keep
the top of the range: with f = z/‖z‖/√τ every logit difference |f(x)ᵀ(μ_a − μ_c)| ≤ 2/τ,
so the loss is at most log(1 + |Q|·e^{2/τ}), |Q| ≤ min(M, K − 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy as sp

from .common import BoundCheck, assumption, evaluate_registry, make_check, require

L_sup, L_un, tau, gamma = sp.symbols(r"L_{sup}^{\mu} L_{un} \tau \gamma", real=True)
M = sp.Symbol("M", positive=True, integer=True)

#: Lemma 4.3 (one negative), natural-log form.
STATEMENT_ONE = sp.Le(L_sup, (L_un - tau * sp.log(2)) / (1 - tau))
#: M negatives, with τ = τ_M and γ = γ_M of the module docstring.
STATEMENT_M = sp.Le(L_sup, (L_un - gamma) / (1 - tau))
STATEMENT = STATEMENT_ONE

#: One-negative bound with the practical (augmentation-pair) unsupervised loss: a diagnostic.
STATEMENT_PRACTICAL = sp.Le(L_sup, (sp.Symbol(r"L_{un}^{prac}", real=True) - tau * sp.log(2)) / (1 - tau))

TERMS_ONE = ["arora_mean_classifier_loss", "arora_unsupervised_loss", "arora_collision"]
TERMS_PRACTICAL = ["arora_mean_classifier_loss", "arora_unsupervised_loss_practical", "arora_collision"]
TERMS_M = ["arora_mean_classifier_loss_M", "arora_unsupervised_loss_M", "arora_collision_M", "arora_collision_floor_M", "arora_negatives"]
REQUIRED_TERMS = TERMS_ONE + TERMS_M + ["arora_unsupervised_loss_practical"]
ASSUMPTIONS = {
    "collision_below_one": "τ_M < 1: some task has a negative class different from the anchor's",
    "same_representation": "one f on both sides; the class means are the means of that f (by construction of the measurement)",
    "independent_negatives": "negatives are independent draws of the marginal (by construction on D̂)",
}
_NOTES = {k: ASSUMPTIONS[k] for k in ("same_representation", "independent_negatives")}


def arora_bound(l_un: float, collision: float, floor: float) -> float:
    """(L_un − γ)/(1 − τ): the right-hand side of both forms.

    Examples:
        >>> round(arora_bound(1.0, 0.5, 0.5 * math.log(2)), 6)
        1.306853
    """
    if not collision < 1:
        # τ = 1 (one class): every negative collides and L_sup is not defined.
        raise ValueError(f"the collision probability must be < 1 for the bound to be defined, got {collision}")
    return (l_un - floor) / (1 - collision)


def loss_ceiling(terms: Mapping[str, float], negative_classes: float) -> tuple[float | None, str]:
    """log(1 + |Q| e^{2/τ}), the largest mean-classifier loss with |Q| negative classes (None without τ).

    Examples:
        >>> round(loss_ceiling({"loss_temperature": 0.5}, 1)[0], 6) == round(math.log1p(math.exp(4)), 6)
        True
    """
    tau_ = terms.get("loss_temperature")
    if tau_ is None or not float(tau_) > 0:
        return None, ""
    a = 2 / float(tau_)
    return a + math.log(negative_classes) + math.log1p(math.exp(-a) / negative_classes), f"log(1 + {negative_classes:g} e^(2/tau)): logits |f^T(mu_a - mu_c)| <= 2/tau at tau={float(tau_):g}"


def trivial_ceiling(terms: Mapping[str, float], constant_term: str, negative_classes: float) -> tuple[float | None, str]:
    """The ceiling of a mean-classifier loss: what a constant encoder attains (every logit 0,
    so log(1 + |Q|) for a task of |Q| negative classes; ``constant_term``, measured with the same
    draws of tasks), the trivial predictor's loss; without that term, the top of the range
    (:func:`loss_ceiling`).

    Examples:
        >>> trivial_ceiling({"arora_constant_encoder_loss": math.log(2)}, "arora_constant_encoder_loss", 1)[0] == math.log(2)
        True
    """
    value = terms.get(constant_term)
    if value is not None:
        return float(value), "the loss of a constant encoder (every logit 0: log(1 + |Q|) per task), the trivial predictor's"
    return loss_ceiling(terms, negative_classes)


def _classes(terms: Mapping[str, float], draws: float) -> float:
    k = terms.get("num_classes", terms.get("arora_negatives"))
    return max(1.0, min(draws, float(k) - 1)) if k is not None else draws


def one_negative(terms: Mapping[str, float]) -> BoundCheck:
    """Lemma 4.3: L_sup^μ ≤ (L_un − τ·log 2)/(1 − τ) with one negative [paper]."""
    t = require(terms, TERMS_ONE, "arora2019.one_negative")
    col = t["arora_collision"]
    assumptions = {"collision_below_one": assumption(col, 1.0, strict=True)}
    bound = arora_bound(t["arora_unsupervised_loss"], col, col * math.log(2)) if col < 1 else None
    return make_check(
        "arora2019.one_negative", STATEMENT_ONE, bound, t["arora_mean_classifier_loss"], "paper", assumptions,
        {"L_un": t["arora_unsupervised_loss"], "tau": col}, *trivial_ceiling(terms, "arora_constant_encoder_loss", 1), notes=_NOTES,
    )


def one_negative_practical(terms: Mapping[str, float]) -> BoundCheck:
    """Lemma 4.3's right-hand side with the practical L_un (augmentation positives) [diagnostic: not a theorem]."""
    t = require(terms, TERMS_PRACTICAL, "arora2019.one_negative_practical")
    col = t["arora_collision"]
    bound = arora_bound(t["arora_unsupervised_loss_practical"], col, col * math.log(2)) if col < 1 else None
    return make_check(
        "arora2019.one_negative_practical", STATEMENT_PRACTICAL, bound, t["arora_mean_classifier_loss"], "diagnostic",
        {"collision_below_one": assumption(col, 1.0, strict=True)}, {"L_un_practical": t["arora_unsupervised_loss_practical"], "tau": col},
        *trivial_ceiling(terms, "arora_constant_encoder_loss", 1), note="augmentation positives in place of ideal ones: not Arora et al.'s hypothesis, so this can fail",
    )


def m_negative(terms: Mapping[str, float]) -> BoundCheck:
    """L_sup^{μ,M} ≤ (L_un^M − γ_M)/(1 − τ_M) with M independent negatives [reconstructed constants]."""
    t = require(terms, TERMS_M, "arora2019.m_negative")
    col, floor = t["arora_collision_M"], t["arora_collision_floor_M"]
    assumptions = {"collision_below_one": assumption(col, 1.0, strict=True)}
    bound = arora_bound(t["arora_unsupervised_loss_M"], col, floor) if col < 1 else None
    measured = t["arora_mean_classifier_loss_M"]
    # Both sides are Monte-Carlo estimates: the slack in units of their combined standard error.
    se_un, se_sup = terms.get("arora_unsupervised_loss_M_stderr"), terms.get("arora_mean_classifier_loss_M_stderr")
    extra = {}
    if bound is not None and se_un is not None and se_sup is not None:
        se = math.hypot(float(se_un) / (1 - col), float(se_sup))
        extra["monte_carlo_stderr"] = se
        extra["slack_in_stderr"] = (bound - measured) / se if se > 0 else None
    return make_check(
        "arora2019.m_negative", STATEMENT_M, bound, measured, "reconstructed", assumptions,
        {"L_un": t["arora_unsupervised_loss_M"], "tau": col, "gamma": floor, "M": t["arora_negatives"]},
        *trivial_ceiling(terms, "arora_constant_encoder_loss_M", _classes(terms, t["arora_negatives"])), notes=_NOTES, **extra,
    )


THEOREMS = {
    "arora2019.one_negative": (STATEMENT_ONE, "paper", one_negative),
    "arora2019.m_negative": (STATEMENT_M, "reconstructed", m_negative),
    "arora2019.one_negative_practical": (STATEMENT_PRACTICAL, "diagnostic", one_negative_practical),
}
#: The controls change what these checks read (the embedding; the labels). The practical
#: diagnostic has no shuffled-labels control: its bound side reads no label (L_un^prac is
#: label-free and a permutation keeps τ), so shuffling only moves the measured side towards
#: log 2 and its failure there is forced by the control, not evidence about the encoder.
CONTROLS = {name: ("random_init", "random_init_bn") + (() if name.endswith("practical") else ("shuffled_labels",)) for name in THEOREMS}


def evaluate(terms: Mapping[str, float]) -> BoundCheck:
    """The one-negative bound (Lemma 4.3), the paper's headline form."""
    return one_negative(terms)


def evaluate_all(terms: Mapping[str, float]) -> list[BoundCheck]:
    """Every form; a form whose terms were not measured is reported as missing."""
    return evaluate_registry(THEOREMS, terms)
