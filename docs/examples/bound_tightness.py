"""The "How tight can a bound be" table of the README and docs/certificates.md, from a store.

Each column is a run that was measured (`clbounds measure`, `clbounds bounds`) and certified
(`clbounds certify RUN`, `--encoder`, `--train-sample`, and `--contrastive` where it applies);
a cell is empty where that step was not run. Every bound is judged against its trivial
ceiling and marked "vacuous" at or above it.

    python docs/examples/bound_tightness.py --store STORE quick-simclr-synthetic quick-simclr-digits
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from clbounds.experiments.store.db import Store

#: (row label, theorem): bounds on the downstream error, loosest kind first.
ERROR_BOUNDS = [
    ("Huang et al. 2023, Theorem 1 (features)", "huang2023.theorem1"),
    ("Huang et al. 2023, InfoNCE corollary", "huang2023.corollary_infonce"),
    ("Robust CL, Lipschitz transfer (error)", "robust_cl.lipschitz_transfer_error"),
    ("Training-sample certificate (PAC-Bayes, prior on half the training split)", "certificate.pac_bayes_train_sample"),
    ("Held-out certificate, probe posterior", "certificate.pac_bayes_downstream"),
    ("Held-out certificate, encoder + probe posterior", "certificate.pac_bayes_encoder_probe"),
    ("Held-out Clopper-Pearson, prior-mean probe", "certificate.heldout_prior_mean"),
]
#: the downstream cross-entropy from an NT-Xent certificate (ceiling log K).
CE_BOUNDS = [
    ("van Elst & Ghoshdastidar transfer of the training-sample NT-Xent certificate (sigma = 0)", "certificate.transfer_van_elst_train_sample"),
    ("van Elst & Ghoshdastidar transfer of the held-out NT-Xent certificate (sigma = 0)", "certificate.transfer_van_elst"),
]
#: (row label, measurement): what the bounds are compared with.
ERROR_MEASURED = [
    ("Measured: the run's encoder + probe, test error", "certificate_train_sample_run_error"),
    ("Measured: the training-sample certificate's Gibbs classifier, test error", "certificate_train_sample_gibbs_error"),
    ("Measured: the held-out certificate's Gibbs classifier, test error", "certificate_gibbs_error"),
    ("Trivial predictor (most frequent class), test error", "certificate_trivial_error"),
]
#: bounds on an NT-Xent risk, each at its own batch size (its ceiling is log(2B - 1) at that B).
LOSS_BOUNDS = [
    ("SSA-CLR PAC-Bayes term (piece 3, reconstructed)", "ssa_clr.pac_bayes"),
    ("Training-sample NT-Xent certificate (van Elst & Ghoshdastidar setting)", "certificate.pac_bayes_contrastive_train_sample"),
    ("Held-out NT-Xent certificate (fresh draws)", "certificate.pac_bayes_contrastive"),
]


def _cell(check: dict[str, Any] | None) -> str:
    if check is None or check.get("bound") is None or not math.isfinite(check["bound"]):
        return ""
    ceiling = (check.get("details") or {}).get("ceiling") or {}
    mark = " (vacuous)" if check.get("vacuous") else ""
    against = f" / {ceiling['value']:.3g}" if "value" in ceiling else ""
    return f"{check['bound']:.3g}{against}{mark}"


def table(store: Store, runs: list[str]) -> str:
    """Markdown: one column per run, the bounds as `bound / ceiling`, then the measured errors."""
    records = [store.find_run(r) for r in runs]
    checks = [{c["theorem"]: c for c in store.bound_checks(r.id)} for r in records]
    rows = [{m["name"]: m["value"] for m in store.measurements(r.id)} for r in records]
    head = "| Bound on the downstream error (bound / trivial ceiling) | " + " | ".join(f"`{r.name}`" for r in records) + " |"
    lines = [head, "|---|" + "---|" * len(records)]
    lines += [f"| {label} | " + " | ".join(_cell(c.get(theorem)) for c in checks) + " |" for label, theorem in ERROR_BOUNDS]
    lines += [f"| {label} | " + " | ".join(f"{r[name]:.3g}" if name in r else "" for r in rows) + " |" for label, name in ERROR_MEASURED]
    lines += ["", "| Bound on the NT-Xent risk, and its transfer to the downstream cross-entropy (bound / trivial value) | " + " | ".join(f"`{r.name}`" for r in records) + " |",
              "|---|" + "---|" * len(records)]
    lines += [f"| {label} | " + " | ".join(_cell(c.get(theorem)) for c in checks) + " |" for label, theorem in LOSS_BOUNDS]
    lines += [f"| {label} | " + " | ".join(_cell(c.get(theorem)) for c in checks) + " |" for label, theorem in CE_BOUNDS]
    measured = [c.get("certificate.pac_bayes_contrastive_train_sample") or c.get("certificate.pac_bayes_contrastive") for c in checks]
    lines.append("| Measured: NT-Xent of the Gibbs encoder on the test split, batch 64 | "
                 + " | ".join(f"{m['measured']:.3g}" if m and m.get("measured") is not None else "" for m in measured) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("runs", nargs="+", help="run ids or names")
    args = parser.parse_args()
    print(table(Store(args.store), args.runs))


if __name__ == "__main__":
    main()
