"""One module per theorem: a sympy statement, its assumptions as checks on measured terms,
and ``evaluate(terms) -> BoundCheck`` (numbers only; no torch).

- ``arora2019``: the mean-classifier bound of Arora et al. 2019 (1 and M negatives).
- ``huang2023``: Huang, Yi & Zhao, Theorems 1–4 and the two corollaries.
- ``ssa_clr``: SSA-CLR [reconstructed]: Arora on the ideal loss, the shift, PAC-Bayes/SAM.
- ``robust_cl``: robust contrastive learning [reconstructed]: the √2-Lipschitz transfer and
  the adversarial-InfoNCE proxy.
- ``wen2020``: width-sweep diagnostic (``evaluate_sweep``).
- ``cacr``: CACR claims against SimCLR (``evaluate_pair``).
- ``certificates``: the PAC-Bayes-kl certificate and the test-set bound, the tightness
  reference for the others (the posterior is optimised in ``experiments/measurement/certify.py``).

``evaluate_all(terms)`` evaluates every single-run theorem on a mapping of measured terms
(from a run store or ``clbounds.measure``), with vacuity and the controls.
"""

from . import arora2019, cacr, certificates, common, huang2023, robust_cl, ssa_clr, wen2020
from .common import BoundCheck, MissingTermError, headline, verdict
from .evaluate import evaluate_all

__all__ = ["BoundCheck", "MissingTermError", "arora2019", "cacr", "certificates", "common", "evaluate_all", "headline", "huang2023", "robust_cl", "ssa_clr", "verdict", "wen2020"]
