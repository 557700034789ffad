r"""CACR / CCT: Zheng, Chen, Yao, Yang, Li, Zhang, Zhang, Tsang, Zhou & Zhou, "Contrastive
Attraction and Contrastive Repulsion for Representation Learning" (TMLR 2023; earlier
"Contrastive Conditional Transport", arXiv 2105.03746; PAPERS.md §4). Claim checks, not a
numeric bound [paper claims].

A CACR run is compared with a SimCLR run on the same data (same dataset, encoder, augmentation
and seed; ``experiments/bounds_step.py`` pairs them). The claims:

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
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .common import BoundCheck

A_cacr, A_simclr, I_cacr, I_simclr, rho_w = sp.symbols(r"A_{CACR} A_{SimCLR} I_{CACR} I_{SimCLR} \rho_{w}", real=True)
STATEMENT = sp.And(sp.StrictLessThan(A_cacr, A_simclr), sp.StrictLessThan(I_cacr, I_simclr), sp.StrictLessThan(rho_w, 0))
WEIGHT_TERMS = ["cacr_weight_distance_corr", "cacr_same_class_weight_ratio"]
REQUIRED_TERMS = ["alignment", "mi_query_negative", "cacr_weight_distance_corr"]
ASSUMPTIONS = {"claims_measured": "every claim's terms are present in both runs (the weight claim in the CACR run)"}


def _compare(name: str, cacr: Mapping[str, float], simclr: Mapping[str, float], term: str) -> dict:
    if cacr.get(term) is None or simclr.get(term) is None:
        return {"measured": False, "reason": f"not measured: {term} missing in the {'CACR' if cacr.get(term) is None else 'SimCLR'} run"}
    a, b = float(cacr[term]), float(simclr[term])
    return {"measured": True, "cacr": a, "simclr": b, "difference": a - b, "holds": a < b, "claim": f"{name}: CACR < SimCLR"}


def evaluate_pair(cacr_terms: Mapping[str, float], simclr_terms: Mapping[str, float]) -> BoundCheck:
    """Checks the three CACR claims against a SimCLR run on the same data.

    Example:
        >>> c = evaluate_pair({"alignment": 0.2, "mi_query_negative": 0.01, "cacr_weight_distance_corr": -0.9},
        ...                   {"alignment": 0.3, "mi_query_negative": 0.05})
        >>> c.holds, c.assumptions_met
        (True, True)
    """
    claims = {
        "alignment": _compare("alignment", cacr_terms, simclr_terms, "alignment"),
        "mi_query_negative": _compare("mutual information query-negative", cacr_terms, simclr_terms, "mi_query_negative"),
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
    holds = all(c["holds"] for c in measured) if measured else None
    details = {
        "label": "paper",
        "assumptions": {"claims_measured": {"met": not missing, "note": "; ".join(missing) or "all claims measured"}},
        "inputs": {k: v for k, v in {"A_CACR": cacr_terms.get("alignment"), "A_SimCLR": simclr_terms.get("alignment"), "I_CACR": cacr_terms.get("mi_query_negative"),
                                       "I_SimCLR": simclr_terms.get("mi_query_negative"), "rho_w": corr}.items() if v is not None},
        "claims": claims,
    }
    return BoundCheck("cacr.claims", None, None, holds, None, not missing, STATEMENT, details)
