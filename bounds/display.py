r"""Every statement written by hand, as LaTeX and as plain Unicode, for reports and teaching.

The sympy statements of the modules are what the checks evaluate (and the tests lambdify);
sympy's printers reorder and expand them (the centre condition loses its ρ_max, a symbol named
``\mu_k^T\mu_l`` prints as a power). These are the same statements as the papers write them.
``tests/test_report.py`` checks that every theorem has one and that no Unicode form keeps a
raw LaTeX command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .common import BoundCheck, headline, term_gaps, verdict

_PAC = r"\frac{R}{n} + R\sqrt{\frac{\mathrm{KL}+\ln(2\sqrt{n}/\delta)}{2n}}"
_PAC_U = "R/n + R·√((KL + ln(2√n/δ))/(2n))"
_KL = r"\mathrm{KL}=\frac{\|\theta-\theta_0\|^2\,(k+2\sqrt{k\ln n}+2\ln n)}{2\rho^2}"
_KL_U = "KL = ‖θ − θ₀‖²·(k + 2√(k ln n) + 2 ln n)/(2ρ²)"

#: theorem → (LaTeX, Unicode). Variants ([projection]) share their theorem's entry.
DISPLAY: dict[str, tuple[str, str]] = {
    "arora2019.one_negative": (r"L_{sup}^{\mu}(f) \leq \frac{L_{un}(f) - \tau \log 2}{1-\tau}",
                               "L_sup^μ(f) ≤ (L_un(f) − τ·log 2)/(1 − τ)"),
    "arora2019.m_negative": (r"L_{sup}^{\mu,M}(f) \leq \frac{L_{un}^{M}(f) - \gamma_M}{1-\tau_M}",
                             "L_sup^{μ,M}(f) ≤ (L_un^M(f) − γ_M)/(1 − τ_M)"),
    "arora2019.one_negative_practical": (r"L_{sup}^{\mu}(f) \leq \frac{L_{un}^{prac}(f) - \tau \log 2}{1-\tau}",
                                         "L_sup^μ(f) ≤ (L_un^prac(f) − τ·log 2)/(1 − τ), with augmentation positives (a diagnostic, not a theorem)"),
    "huang2023.theorem1 (centre condition)": (
        r"\mu_k^{\top}\mu_\ell < r^2\left(1-\rho_{max}-\sqrt{2\rho_{max}}-\frac{\Delta_\mu}{2}\right),\quad "
        r"\rho_{max} = 2(1-\sigma)+\frac{R_\varepsilon}{\min_\ell\, p_\ell}+\sigma\left(\frac{L\delta}{r}+\frac{2\varepsilon}{r}\right)",
        "μ_kᵀμ_ℓ < r²·(1 − ρ_max − √(2ρ_max) − Δ_μ/2),  ρ_max = 2(1 − σ) + R_ε/min_ℓ p_ℓ + σ·(Lδ/r + 2ε/r)"),
    "huang2023.theorem1": (r"\mathrm{Err}(G_f) \leq (1-\sigma) + R_\varepsilon", "Err(G_f) ≤ (1 − σ) + R_ε"),
    "huang2023.theorem1_tightest": (r"\mathrm{Err}(G_f) \leq \min_{(\varepsilon,\,\delta)} \left[(1-\sigma(\delta)) + R_\varepsilon\right]",
                                    "Err(G_f) ≤ min over the (ε, δ) that meet the centre condition of (1 − σ(δ)) + R_ε"),
    "huang2023.theorem2": (r"R_\varepsilon \leq \frac{c_M}{\varepsilon^2}\, L_{align}", "R_ε ≤ c_M·L_align/ε²"),
    "huang2023.theorem3": (r"\mu_k^{\top}\mu_\ell \leq \log\left(\exp\left(\frac{L_2+\tau}{p_{min}^2}\right) - e^{1-\varepsilon}\right)",
                           "μ_kᵀμ_ℓ ≤ log(exp((L₂ + τ)/p_min²) − e^(1−ε))"),
    "huang2023.theorem4": (r"\mu_k^{\top}\mu_\ell \leq \sqrt{\frac{2}{p_{min}^2}\left(L_2+\tau'-\frac{d-K}{2}\right)}",
                           "μ_kᵀμ_ℓ ≤ √((2/p_min²)·(L₂ + τ' − (d − K)/2))"),
    "huang2023.corollary_infonce": (r"\mathrm{Err}(G_f) \leq (1-\sigma) + \eta(\varepsilon)\sqrt{2+2L_1},\quad \eta(\varepsilon)=\frac{\sqrt{c_M}}{\varepsilon}",
                                    "Err(G_f) ≤ (1 − σ) + η(ε)·√(2 + 2L₁),  η(ε) = √c_M/ε"),
    "huang2023.corollary_barlow": (r"\mathrm{Err}(G_f) \leq (1-\sigma) + \sqrt{2}\,\eta(\varepsilon)\, d^{1/4} L_1^{1/4}",
                                   "Err(G_f) ≤ (1 − σ) + √2·η(ε)·d^(1/4)·L₁^(1/4)"),
    "ssa_clr.ideal_arora": (r"L_{sup}^{\mu,B-1}(f) \leq \frac{L^{prac} + \mathrm{gap} - \gamma}{1-\tau}", "L_sup^{μ,B−1}(f) ≤ (L^prac + gap − γ)/(1 − τ)"),
    "ssa_clr.shift_tv": (r"|\mathrm{gap}| \leq (\mathrm{hi}-\mathrm{lo})\cdot \mathrm{TV}", "|gap| ≤ (hi − lo)·TV"),
    "ssa_clr.pac_bayes": (r"L^{prac}_{pop} \leq \hat{L}_\rho + " + _PAC + r",\quad " + _KL, "L^prac_pop ≤ L̂_ρ + " + _PAC_U + ",  " + _KL_U),
    "ssa_clr.pac_bayes_tightest": (r"L^{prac}_{pop} \leq \min_{\rho} \left[\hat{L}_\rho + C_{PB}(\rho, \delta/G)\right]",
                                   "L^prac_pop ≤ min over G radii ρ of L̂_ρ + C_PB(ρ, δ/G)  (a union bound over the grid)"),
    "ssa_clr.assembled": (r"L_{sup}^{\mu,B-1}(f) \leq \frac{\hat{L}_\rho + C_{PB} + \mathrm{gap} - \gamma}{1-\tau}",
                          "L_sup^{μ,B−1}(f) ≤ (L̂_ρ + C_PB + gap − γ)/(1 − τ)"),
    "robust_cl.lipschitz_transfer": (r"L_{rob}^{CE} \leq L_{clean}^{CE} + \sqrt{2}\,\|W\|_2\, \mathbb{E}_x \sup_{\|\delta\|_\infty \leq \epsilon} \|h(x+\delta)-h(x)\|",
                                     "L_rob^CE ≤ L_clean^CE + √2·‖W‖₂·E_x sup_{‖δ‖∞ ≤ ε} ‖h(x+δ) − h(x)‖"),
    "robust_cl.lipschitz_transfer_error": (r"\mathrm{Err}_{rob} \leq \frac{L_{clean}^{CE} + \sqrt{2}\,\|W\|_2\, \mathbb{E}_x \sup \|h(x+\delta)-h(x)\|}{\log 2}",
                                           "Err_rob ≤ (L_clean^CE + √2·‖W‖₂·E_x sup ‖h(x+δ) − h(x)‖)/log 2"),
    "robust_cl.adversarial_infonce": (r"L_{rob}^{CE} \leq a\, L^{adv}_{InfoNCE} + b \max_{\|\theta'-\theta\| \leq \rho} L^{ben}_{InfoNCE}(\theta') + c\, D + \mathrm{const}",
                                      "L_rob^CE ≤ a·L^adv_InfoNCE + b·max_{‖θ'−θ‖ ≤ ρ} L^ben_InfoNCE(θ') + c·D + const  (evaluated at a = b = c = 1, const = 0: a proxy)"),
    "wen2020.width_sweep": (r"\beta_{\nabla} < 0 \;\wedge\; \beta_{W} < 0", "β_∇ < 0 ∧ β_W < 0  (log-log slopes of min_t ‖∇L‖ and of the weight movement against width)"),
    "cacr.claims": (r"A_{CACR} < A_{SimCLR} \;\wedge\; I_{CACR} < I_{SimCLR} \;\wedge\; \rho_w < 0", "A_CACR < A_SimCLR ∧ I_CACR < I_SimCLR ∧ ρ_w < 0"),
}


def display(theorem: str) -> tuple[str, str] | None:
    """(LaTeX, Unicode) of a theorem, its variants ([projection]) sharing the entry.

    Examples:
        >>> display("huang2023.theorem1[projection]")[1]
        'Err(G_f) ≤ (1 − σ) + R_ε'
    """
    return DISPLAY.get(theorem) or DISPLAY.get(theorem.split("[", 1)[0])


# ---- the bound table of `clbounds bounds` ---------------------------------------------


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _assumption_cell(check: BoundCheck) -> str:
    if check.assumptions_met:
        return "met"
    parts = []
    for name, a in check.details.get("assumptions", {}).items():
        if not a.get("met", True):
            margin = a.get("margin")
            parts.append(f"{name} ({'margin ' + _num(margin) if margin is not None else a.get('note', 'failed')})")
    parts += term_gaps(check.details)
    return "failed: " + "; ".join(parts) if parts else "failed"


def _holds_cell(check: BoundCheck) -> str:
    if check.holds is None:
        return "n/a" if check.bound is None and check.measured is None else "undefined"
    margin = check.details.get("margin", {}).get("margin")
    if check.resolved is False:
        return f"not resolved (|difference| {_num(abs(check.bound - check.measured))} ≤ margin {_num(margin)})"
    # "violated" only where the theorem applies: a failure with a hypothesis not met promises nothing
    failed = "**VIOLATED**" if check.assumptions_met is not False else "fails (hypothesis not met)"
    return ("yes" if check.holds else failed) + (f" (margin {_num(margin)})" if margin is not None else "")


def _vacuous_cell(check: BoundCheck) -> str:
    ceiling = check.details.get("ceiling")
    if ceiling is None:
        return "no ceiling"
    if check.vacuous is None:
        return f"– (ceiling {_num(ceiling['value'])})"
    return f"{'**VACUOUS**' if check.vacuous else 'no'} (ceiling {_num(ceiling['value'])})"


def controls_summary(details: dict, digits: int = 4, empty: str = "–") -> str:
    """The check on each control, one clause each: ``random_init: holds (0.69 ≤ 0.7)``; ``empty``
    when the check has none. An infinite bound is stored as None and shown as "–"."""
    controls = (details.get("controls") if isinstance(details, dict) else None) or {}
    if not controls:
        return empty
    num = lambda v: "–" if v is None else f"{v:.{digits}g}"  # noqa: E731
    parts = []
    for name, c in controls.items():
        if c.get("holds") is None:
            parts.append(f"{name}: n/a")
            continue
        why = c.get("why_not")
        if c.get("resolved") is False:
            parts.append(f"{name}: not resolved ({num(c.get('measured'))} vs {num(c.get('bound'))}, margin {num(c.get('margin'))}; does not testify)")
        else:
            parts.append(f"{name}: {'holds' if c['holds'] else 'fails'} ({num(c.get('measured'))} {'≤' if c['holds'] else '>'} {num(c.get('bound'))})"
                         + (f"; does not testify: {why}" if why else ""))
    return "; ".join(parts)


def _controls_cell(check: BoundCheck) -> str:
    return controls_summary(check.details)


def format_bound_table(checks: Sequence[BoundCheck]) -> str:
    """A headline, a Markdown table of the checks, then every violated bound as a finding.

    Every row shows both sides (bound and measured), whether the bound is vacuous (at or above
    the ceiling of the measured quantity), the same check on the controls, and the verdict.

    Examples:
        >>> import sympy as sp
        >>> from clbounds.bounds.common import make_check
        >>> x = sp.Symbol("x")
        >>> print(format_bound_table([make_check("demo", sp.Le(x, 1), 1.0, 2.0, "paper")]).splitlines()[4])
        | demo | paper | 1 | 2 | **VIOLATED** | 0.5 | no ceiling | – | violated | met |
    """
    lines = [f"Headline: {headline(checks)}.", "",
             "| theorem | label | bound | measured | holds | tightness | vacuous | on the controls | verdict | assumptions |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        bound = ("≥ " if c.details.get("lower_limit") else "") + _num(c.bound)  # a stopped ascent: the bound's lower limit
        lines.append(f"| {c.theorem} | {c.label} | {bound} | {_num(c.measured)} | {_holds_cell(c)} | {_num(c.tightness)} | {_vacuous_cell(c)} | {_controls_cell(c)} | {verdict(c)} | {_assumption_cell(c)} |")
    failing = [c for c in checks if c.holds is False and c.resolved is not False]
    violated = [c for c in failing if c.assumptions_met is not False]
    unmet = [c for c in failing if c.assumptions_met is False]
    if violated:
        lines += ["", "Findings (a measurement violates the bound, the theorem's hypotheses met):"]
        for c in violated:
            lines.append(f"- {c.theorem} [{c.label}]: measured {c.measured:.6g} > bound {c.bound:.6g} (excess {c.measured - c.bound:.4g}); inputs {json.dumps(c.details.get('inputs', {}), default=str)}")
    if unmet:
        lines += ["", "Hypothesis not met (not violations: the theorem does not apply):"]
        for c in unmet:
            lines.append(f"- {c.theorem} [{c.label}]: measured {c.measured:.6g} > bound {c.bound:.6g}; {_assumption_cell(c)}; inputs {json.dumps(c.details.get('inputs', {}), default=str)}")
    lipschitz = [c for c in checks if c.details.get("lipschitz")]
    if lipschitz:
        lines += ["", "Theorem 1's Lipschitz constant, both sides (the centre condition at each):"]
        for c in lipschitz:
            lip = c.details["lipschitz"]
            lines.append(f"- {c.theorem}: certified upper L = {_num(lip['certified_upper'])}, measured lower L = {_num(lip['measured_lower'])}; {lip['decides']}")
    return "\n".join(lines)
