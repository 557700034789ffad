r"""CACR / CCT: Zheng, Chen, Yao, Yang, Li, Zhang, Zhang, Tsang, Zhou & Zhou, "Contrastive
Attraction and Contrastive Repulsion for Representation Learning" (TMLR 2023; earlier
"Contrastive Conditional Transport", arXiv 2105.03746; PAPERS.md §4). Claim checks, not a
numeric bound [paper claims].

A CACR run is compared with a SimCLR run on the same data (same dataset, encoder, augmentation
and seed; ``experiments/pipeline/bounds_step.py`` pairs them). The claims:

1. alignment is better: A_CACR < A_SimCLR, with A = E‖z − z⁺‖² of Wang & Isola
   (``alignment``, normalised backbone features; the projection's ``alignment_projection`` is
   reported alongside);
2. the mutual information between a query and a negative is lower:
   I_CACR < I_SimCLR (``mi_query_negative``, KSG estimate in nats);
3. the repulsion weights put more mass on harder (closer) negatives: the correlation between a
   negative's weight w⁻ and its distance ‖z_q − z⁻‖², ``cacr_weight_distance_corr``, is < 0.
   Optionally ``cacr_same_class_weight_ratio`` (mean weight on same-class negatives / mean
   weight on all negatives) > 1: the hard, same-class negatives get more than their share.

Statement: A_CACR < A_SimCLR ∧ I_CACR < I_SimCLR ∧ ρ_w < 0. ``holds`` is the conjunction of
the claims that were measured; a claim whose terms are absent is reported as "not measured"
and makes ``assumptions_met`` False (the weight terms come from CACR training, which may not
store them).

Each claim is also its own check (``cacr.alignment``, ``cacr.mutual_information``,
``cacr.hard_negative_weights``, from :func:`evaluate_pair_all`), so each gets its own verdict
on the controls (experiments/pipeline/bounds_step.py) where one exists: the weight claim is a
statistic of the CACR run, tested at random initialisation and on random Gaussian
embeddings, on which ρ_w is just as negative (w⁻ is a softmax of −τ⁻·distance): that claim
holds by construction. The two comparisons have no structure-free control (at random
initialisation one seed gives both runs the same weights), and a pair of runs is one seed:
each keeps the direction it saw (``holds``) but is not resolved (:data:`ONE_PAIR`); only a
paired test across seeds decides them (figures/reproductions.py, the ``cacr`` target).

The MI claim is decided only where the estimator can resolve it. ``mi_query_negative`` is
KSG between a query and a negative drawn by CACR's own weights π⁻(j|i), and ``mi_resolution``
is KSG's largest error on correlated Gaussians of known MI at the same N and dimension. When
|I_CACR − I_SimCLR| is not larger than the resolution of either run, the check says "not
measurable at this size" (``holds`` None) instead of a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .common import BoundCheck, make_check

A_cacr, A_simclr, I_cacr, I_simclr, rho_w = sp.symbols(r"A_{CACR} A_{SimCLR} I_{CACR} I_{SimCLR} \rho_{w}", real=True)
STATEMENT_ALIGNMENT = sp.StrictLessThan(A_cacr, A_simclr)
STATEMENT_MI = sp.StrictLessThan(I_cacr, I_simclr)
STATEMENT_WEIGHTS = sp.StrictLessThan(rho_w, 0)
STATEMENT = sp.And(STATEMENT_ALIGNMENT, STATEMENT_MI, STATEMENT_WEIGHTS)
WEIGHT_TERMS = ["cacr_weight_distance_corr", "cacr_same_class_weight_ratio"]
REQUIRED_TERMS = ["alignment", "mi_query_negative", "cacr_weight_distance_corr"]
ASSUMPTIONS = {"claims_measured": "every claim's terms are present in both runs (the weight claim in the CACR run)"}


def _compare(name: str, cacr: Mapping[str, float], simclr: Mapping[str, float], term: str) -> dict:
    if cacr.get(term) is None or simclr.get(term) is None:
        return {"measured": False, "reason": f"not measured: {term} missing in the {'CACR' if cacr.get(term) is None else 'SimCLR'} run"}
    a, b = float(cacr[term]), float(simclr[term])
    return {"measured": True, "cacr": a, "simclr": b, "difference": a - b, "holds": a < b, "claim": f"{name}: CACR < SimCLR"}


#: Why a comparison of one CACR run with one SimCLR run decides nothing on its own.
ONE_PAIR = ("one pair of runs (one seed): a difference between two trainings is not yet a difference between the methods; "
            "the claim is decided across seeds by a paired test (`clbounds reproduce cacr`)")


def _one_pair(claim: dict) -> dict:
    """A measured comparison of one pair keeps the direction it saw (``holds``) but is not resolved."""
    if claim.get("measured") and claim.get("holds") is not None:
        claim.update(resolved=False, reason=ONE_PAIR)
    return claim


def _mi_resolved(claim: dict, cacr: Mapping[str, float], simclr: Mapping[str, float]) -> dict:
    """Marks an MI comparison unresolved when the difference is within KSG's calibrated error."""
    res = [float(t["mi_resolution"]) for t in (cacr, simclr) if t.get("mi_resolution") is not None]
    if claim.get("measured") and res:
        claim["resolution"] = max(res)
        if abs(claim["difference"]) <= claim["resolution"]:
            claim.update(holds=None, resolved=False,
                         reason=f"not measurable at this size: |difference| {abs(claim['difference']):.3g} nats is within the KSG resolution {claim['resolution']:.3g} nats")
        else:
            claim["resolved"] = True
    return claim


def _same_weighting(claim: dict, cacr: Mapping[str, float], simclr: Mapping[str, float]) -> dict:
    """The two MI estimates must draw their negatives with one τ⁻ (``mi_tau_neg``), else they are not comparable."""
    a, b = cacr.get("mi_tau_neg"), simclr.get("mi_tau_neg")
    if claim.get("measured") and a is not None and b is not None and float(a) != float(b):
        return {"measured": False, "reason": f"not comparable: negatives drawn with tau-={float(a):g} (CACR) and {float(b):g} (SimCLR); measure both with one method.tau_neg"}
    return claim


def evaluate_pair(cacr_terms: Mapping[str, float], simclr_terms: Mapping[str, float]) -> BoundCheck:
    """Checks the three CACR claims against a SimCLR run on the same data.

    Examples:
        >>> c = evaluate_pair({"alignment": 0.2, "mi_query_negative": 0.01, "cacr_weight_distance_corr": -0.9},
        ...                   {"alignment": 0.3, "mi_query_negative": 0.05})
        >>> c.holds, c.assumptions_met
        (True, True)
    """
    claims = {
        "alignment": _one_pair(_compare("alignment", cacr_terms, simclr_terms, "alignment")),
        "mi_query_negative": _one_pair(_mi_resolved(_same_weighting(_compare("mutual information query-negative", cacr_terms, simclr_terms, "mi_query_negative"),
                                                                    cacr_terms, simclr_terms), cacr_terms, simclr_terms)),
    }
    if cacr_terms.get("alignment_projection") is not None and simclr_terms.get("alignment_projection") is not None:
        claims["alignment"]["projection"] = _compare("alignment", cacr_terms, simclr_terms, "alignment_projection")
    corr = cacr_terms.get("cacr_weight_distance_corr")
    claims["hard_negative_weights"] = (
        {"measured": True, "cacr": float(corr), "holds": float(corr) < 0, "claim": "corr(w-, distance) < 0"}
        if corr is not None
        else {"measured": False, "reason": "not measured: cacr_weight_distance_corr missing in the CACR run"}
    )
    ratio = cacr_terms.get("cacr_same_class_weight_ratio")
    if ratio is not None:
        claims["hard_negative_weights"]["same_class_weight_ratio"] = {"value": float(ratio), "holds": float(ratio) > 1}
    measured = [c for c in claims.values() if c["measured"]]
    missing = [c["reason"] for c in claims.values() if not c["measured"]]
    # Three-valued: one failed claim fails the conjunction; an undecided one leaves it undecided.
    # A comparison seen on one pair (resolved False) cannot decide it: then it is not resolved.
    values = [c.get("holds") for c in measured]
    holds = False if False in values else (None if None in values or not values else True)
    resolved = any(c.get("holds") is False and c.get("resolved") is not False for c in measured) or not any(c.get("resolved") is False for c in measured)
    details = {
        "label": "paper",
        "assumptions": {"claims_measured": {"met": not missing, "note": "; ".join(missing) or "all claims measured"}},
        "inputs": {k: v for k, v in {"A_CACR": cacr_terms.get("alignment"), "A_SimCLR": simclr_terms.get("alignment"), "I_CACR": cacr_terms.get("mi_query_negative"),
                                       "I_SimCLR": simclr_terms.get("mi_query_negative"), "rho_w": corr}.items() if v is not None},
        "claims": claims,
    }
    return BoundCheck("cacr.claims", None, None, holds, None, not missing, STATEMENT, details, resolved=resolved)


def _claim_check(theorem: str, statement: sp.Basic, claim: dict, measured: float | None, reference: float | None) -> BoundCheck:
    """One claim as a check: ``measured`` is CACR's value, ``bound`` SimCLR's (or 0 for ρ_w)."""
    holds = claim.get("holds") if claim.get("measured") else None
    reason = claim.get("reason")
    check = make_check(theorem, statement, reference if holds is not None else None, measured if holds is not None else None, "paper", {}, {},
                       claim=claim, **({"reason": reason} if reason else {}))
    # A claim is strict (<): equal values do not support it; make_check's ≤ would say they do.
    return check.replace(holds=holds, tightness=None, assumptions_met=bool(claim.get("measured")), resolved=claim.get("resolved", True) is not False)


def evaluate_pair_all(cacr_terms: Mapping[str, float], simclr_terms: Mapping[str, float]) -> list[BoundCheck]:
    """The conjunction (``cacr.claims``) and each claim as its own check.

    Examples:
        >>> checks = evaluate_pair_all({"alignment": 0.2, "mi_query_negative": 0.0, "mi_resolution": 3.0, "cacr_weight_distance_corr": -0.9},
        ...                            {"alignment": 0.3, "mi_query_negative": 0.1, "mi_resolution": 3.0})
        >>> [(c.theorem, c.holds) for c in checks]
        [('cacr.claims', None), ('cacr.alignment', True), ('cacr.mutual_information', None), ('cacr.hard_negative_weights', True)]
    """
    pair = evaluate_pair(cacr_terms, simclr_terms)
    claims = pair.details["claims"]
    weights = claims["hard_negative_weights"]
    return [
        pair,
        _claim_check("cacr.alignment", STATEMENT_ALIGNMENT, claims["alignment"], claims["alignment"].get("cacr"), claims["alignment"].get("simclr")),
        _claim_check("cacr.mutual_information", STATEMENT_MI, claims["mi_query_negative"], claims["mi_query_negative"].get("cacr"), claims["mi_query_negative"].get("simclr")),
        _claim_check("cacr.hard_negative_weights", STATEMENT_WEIGHTS, weights, weights.get("cacr"), 0.0),
    ]


#: Controls: the weight claim is a statistic of one run, so random-init and random embeddings
#: test it. The comparisons have no structure-free control: at random init one seed gives both
#: runs the same weights, and a strict "<" could not hold there, which would test nothing; they
#: need other seeds (a test across seeds) to be decided.
CONTROLS = {"cacr.hard_negative_weights": ("random_init", "random_embedding")}
