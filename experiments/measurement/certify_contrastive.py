"""`clbounds certify RUN --contrastive`: the PAC-Bayes-kl certificate on the NT-Xent risk of a
Gibbs encoder (bounds.certificates.contrastive_certificate_check; reconstructed from van Elst &
Ghoshdastidar). The posterior machinery (flat weights, the KL to the prior) is the downstream
certificate's (certify.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from clbounds.bounds import certificates as cert

from ..catalog import METHODS
from ..config import config_from_dict
from ..store.db import RunRecord, Store
from ..training.methods import get_method
from ..training.runs import load_encoder, load_run_data, resolve_device
from .certify import FlatParams, kl_to_prior

CONTRASTIVE_PRIOR_SIGMAS = (0.001, 0.003, 0.01)  # σ_p of the encoder's weights; each one member of the union bound


def _unit_views(augment: Any, x: torch.Tensor, batch: int, g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The units: disjoint batches of ``batch`` inputs, each with its two independent views."""
    return [(augment(x[i : i + batch], g), augment(x[i : i + batch], g)) for i in range(0, x.shape[0] - batch + 1, batch)]


def _optimise_encoder_sigma(loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], mu0: torch.Tensor, sigma_p: float,
                            s_units: list[tuple[torch.Tensor, torch.Tensor]], low: float, high: float, delta_pb: float, steps: int,
                            g: torch.Generator) -> torch.Tensor:
    """σ of the posterior N(θ_trained, diag σ²), started at the prior's σ_p, by Adam on McAllester's
    surrogate of the normalised loss, one unit and one draw per step."""
    u = len(s_units)
    rho = torch.full_like(mu0, math.log(sigma_p)).requires_grad_(True)
    opt = torch.optim.Adam([rho], lr=0.01)
    constant = math.log(2 * math.sqrt(u) / delta_pb)
    for step in range(steps):
        x1, x2 = s_units[step % u]
        sigma = rho.exp()
        kl = kl_to_prior(mu0, rho, mu0, sigma_p)
        objective = (loss(mu0 + sigma * torch.randn(mu0.shape, generator=g, dtype=mu0.dtype), x1, x2) - low) / (high - low) + torch.sqrt((kl + constant) / (2 * u))
        opt.zero_grad()
        objective.backward()
        opt.step()
    return rho.detach().exp()


def certify_contrastive(record: RunRecord, store: Store | None = None, units: int = 256, batch: int = 64, delta: float = cert.DELTA,
                        delta_mc: float = cert.DELTA_MC, prior_sigmas: Sequence[float] = CONTRASTIVE_PRIOR_SIGMAS, steps: int = 100,
                        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The PAC-Bayes-kl certificate on the NT-Xent risk at batch ``batch`` of a Gibbs encoder
    (bounds.certificates.contrastive_certificate_check; reconstructed from van Elst &
    Ghoshdastidar). The posterior is over every weight of the encoder and its projection
    head, N(θ_trained, diag σ²) with σ optimised, against the prior N(θ_trained, σ_p² I);
    BatchNorm runs on its stored statistics (eval mode), a fixed part of the prior. S: ``units`` batches of fresh
    generator draws (synthetic data only: the certificate needs more inputs than a test
    split holds); T: the test split's batches, for the measured Gibbs risk."""
    from ..config import ConfigError

    t0 = time.perf_counter()
    cfg = config_from_dict(record.config)
    require_nt_xent(cfg, record.id)
    device = resolve_device(cfg.device)
    data = load_run_data(cfg).to(device)
    if data.generator is None:
        raise ConfigError(f"the contrastive certificate needs fresh draws of a generator ({units} batches of {batch}); {cfg.data.name} has none")
    model = load_encoder(record, data.image_shape).to(device).eval()
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 55_555)
    fresh = data.generator.sample(data.generator.balanced_labels(units * batch, g), g).x.to(device)
    how = f"S: {units} batches of {batch} fresh generator draws with two views each ({cfg.augment}); T: the test split's batches"
    result = contrastive_certificate(model, cfg, fresh, data.x_test, batch, delta, delta_mc, prior_sigmas, steps, g, how, t0, data.num_classes, log)
    if store is not None:
        store_contrastive(store, record.id, result, "certificate_contrastive")
    return result


def _nt_xent_methods() -> list[str]:
    return [name for name in METHODS if get_method(name).nt_xent]


def is_nt_xent(cfg: Any) -> bool:
    """Whether the run was trained with an NT-Xent method (simclr, ssa_clr, ...)."""
    return cfg.method.name in _nt_xent_methods()


def require_nt_xent(cfg: Any, run_id: str) -> None:
    """A config error unless the run was trained with an NT-Xent method."""
    from ..config import ConfigError

    if not is_nt_xent(cfg):
        raise ConfigError(f"the contrastive certificate bounds the NT-Xent risk; run {run_id} was trained with {cfg.method.name} "
                          f"(choose a run of {', '.join(_nt_xent_methods())})")


def contrastive_certificate(model: torch.nn.Module, cfg: Any, x_s: torch.Tensor, x_t: torch.Tensor, batch: int, delta: float, delta_mc: float,
                            prior_sigmas: Sequence[float], steps: int, g: torch.Generator, how: str, t0: float, num_classes: int,
                            log: Callable[[str], None] | None = None, theorem: str = "certificate.pac_bayes_contrastive") -> dict[str, Any]:
    """The certificate of the Gibbs encoder N(model's weights, diag σ²) against the prior
    N(model's weights, σ_p² I) on the units of ``x_s`` (disjoint batches of ``batch``, two
    views each), its Gibbs risk measured on the batches of ``x_t``; then van Elst &
    Ghoshdastidar's transfer of it to the downstream cross-entropy over ``num_classes``
    (bounds.certificates.transfer_check, at its lower limit σ = 0). The model's weights must
    be independent of ``x_s``: they are the prior's mean."""
    from clbounds.theory.losses import info_nce
    from clbounds.theory.shift import infonce_range

    from ..training.augment import Augment

    model.eval()  # BatchNorm on its stored statistics, a fixed part of the prior: S never updates them
    tau = cfg.method.temperature
    low, high = infonce_range(2 * batch - 2, tau)
    augment = Augment(cfg.augment, image_size=x_s.shape[-1], color_strength=cfg.color_strength)
    s_units, t_units = _unit_views(augment, x_s, batch, g), _unit_views(augment, x_t, batch, g)
    flat = FlatParams(model)  # the backbone and the projection head
    mu0 = flat.theta

    def loss(theta: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        params = flat.params(theta)
        projector = {n[len("projector."):]: p for n, p in params.items() if n.startswith("projector.")}
        z1, z2 = (functional_call(model.projector, projector, (functional_call(model, params, (x,)),)) for x in (x1, x2))
        return info_nce(z1, z2, tau)

    def gibbs_losses(mu: torch.Tensor, sigma: torch.Tensor, pairs: list) -> np.ndarray:
        with torch.no_grad():  # one posterior draw per unit
            return np.array([float(loss(mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype), x1, x2)) for x1, x2 in pairs])

    u = len(s_units)
    delta_pb = (delta - delta_mc) / len(prior_sigmas)
    candidates = []
    for sigma_p in prior_sigmas:
        mu = mu0  # the mean stays at the prior's: moving 10^5 weights costs KL faster than it lowers the loss
        sigma = _optimise_encoder_sigma(loss, mu0, sigma_p, s_units, low, high, delta_pb, steps, g)
        values = gibbs_losses(mu, sigma, s_units)
        kl = cert.gaussian_kl(mu.numpy(), sigma.numpy(), mu0.numpy(), sigma_p)
        check = cert.contrastive_certificate_check(float(values.mean()), u, kl, low, high, None, priors=len(prior_sigmas), delta=delta, delta_mc=delta_mc)
        candidates.append((check.bound, sigma_p, mu, sigma, float(values.mean()), kl))
        if log:
            log(f"  prior sigma {sigma_p:g}: KL {kl:.1f}, Gibbs NT-Xent on S {values.mean():.4f}, bound {check.bound:.4f}")
    _, sigma_p, mu, sigma, _, kl = min(candidates, key=lambda c: c[0])
    mean_loss = float(gibbs_losses(mu, sigma, s_units).mean())  # fresh draws: δ' is paid once (see certify)
    measured = float(gibbs_losses(mu, sigma, t_units).mean())
    deterministic = float(np.mean([float(loss(mu0, x1, x2).detach()) for x1, x2 in t_units]))
    seconds = time.perf_counter() - t0
    how = f"{how} ({u} units in S, {len(t_units)} batches in T)"
    protocol = (f"NT-Xent tau={tau:g} at batch {batch}, range [{low:.3f}, {high:.3f}]; {how}; prior N(prior weights, sigma_p^2 I) over the {mu.numel()} "
                f"encoder and head weights, BN statistics fixed; sigma_p from {{{', '.join(f'{s:g}' for s in prior_sigmas)}}} (union bound); posterior "
                f"N(prior weights, diag sigma^2), sigma by Adam, {steps} steps; one posterior draw per unit; delta={delta:g} (Monte Carlo {delta_mc:g}, PAC-Bayes {delta_pb:.4g} per prior)")
    check = cert.contrastive_certificate_check(mean_loss, u, kl, low, high, measured, priors=len(prior_sigmas), delta=delta, delta_mc=delta_mc,
                                               constant=math.log(2 * batch - 1), protocol=protocol, prior_sigma=sigma_p, seconds=seconds, theorem=theorem)
    transfer = cert.transfer_check(check.bound, tau, 2 * batch - 2, num_classes, theorem=theorem.replace("pac_bayes_contrastive", "transfer_van_elst"),
                                   protocol=f"van Elst & Ghoshdastidar's transfer at sigma = 0 of the NT-Xent certificate ({theorem}), M = {2 * batch - 2} negatives, K = {num_classes}")
    return {"bound": check.bound, "measured": measured, "transfer": transfer.bound, "deterministic": deterministic, "kl": kl, "units": u, "low": low, "high": high,
            "constant": math.log(2 * batch - 1), "tau": tau, "batch": batch, "how": how,
            "prior_sigma": sigma_p, "seconds": seconds, "protocol": protocol, "checks": [check, transfer]}


def store_contrastive(store: Store, run_id: str, result: dict[str, Any], prefix: str) -> None:
    """The certificate's two rows (``prefix``_risk, ``prefix``_gibbs_loss) and its checks (the
    certificate and its transfer to the downstream cross-entropy)."""
    store.add_measurements(run_id, [
        (f"{prefix}_risk", result["bound"], f"PAC-Bayes-kl certificate on the Gibbs encoder's NT-Xent risk, {result['protocol']}"),
        (f"{prefix}_gibbs_loss", result["measured"], f"Gibbs encoder (weights ~ posterior per batch), NT-Xent tau={result['tau']:g} batch {result['batch']} on T; {result['how']}"),
    ])
    store.add_bound_checks(run_id, [c.to_row() for c in result["checks"]])
