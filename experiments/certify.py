"""`clbounds certify RUN`: a PAC-Bayes certificate on the downstream error of encoder + probe.

The reference for how tight a bound on this encoder can be (bounds/certificates.py has the
arithmetic, the statements and the references). The recipe, after Dziugaite & Roy (2017)
and Pérez-Ortiz et al. (2021):

1. **Three independent samples.** The *prior* data is the run's training split: the encoder
   was trained on its images (without labels) and the linear probe is fitted on its
   features and labels. The *bound* sample S, of n examples, is drawn independently of it:
   for ``synthetic``, a fresh draw of n images from the run's generator (the same
   distribution, never seen in training); otherwise a random half of the test split. The
   *held-out* sample T is the test split (its second half otherwise): it measures the error
   that is bounded, and gives the test-set bound, the floor any certificate is compared with.
   The fresh draws are class-balanced (n/K of each class, as the generator draws its
   splits): independent, but not identically distributed. The bounds still hold, since a sum
   of independent non-identical [0, 1] variables is more concentrated than the i.i.d. sum
   with the same mean in the convex order (Hoeffding 1956, Theorem 3), and the kl bounds
   only use E exp(n kl(ê‖e)), a convex function of ê.
2. **Prior and posterior.** The encoder is fixed (a point mass in prior and posterior, so it
   adds nothing to the KL); the stochastic part is the probe's weights and biases, with
   prior N(μ₀, σ_p² I), μ₀ the probe fitted on the training split, and posterior
   N(μ, diag σ²). μ and σ are optimised on S by Adam on the McAllester-form surrogate
   ``bounded CE(Q) + sqrt((KL + ln(2√n/δ_p)) / (2n))``, the cross-entropy of each sampled
   probe clipped at p_min = 1e-4 and divided by ln(1/p_min) so that it lies in [0, 1]
   (Pérez-Ortiz et al.'s ``f_classic``). σ_p takes each value of a small grid; the best
   certificate is reported and the union bound pays for the choice.
3. **The certificate** (rigorous, 0-1 loss): ``draws`` probes sampled from the posterior, each
   scored on all of S; their mean error through the Monte-Carlo kl-inverse (δ' = 0.01),
   then the PAC-Bayes-kl inverse with the exact Gaussian KL (δ = 0.04 split over the grid).
   The best prior is chosen on one set of draws and certified on fresh ones, so δ' is spent
   once.

The quantity bounded is the error of the *Gibbs* classifier (a fresh probe drawn from the
posterior for each prediction), not that of the deterministic probe; both are measured on T.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clbounds.bounds import certificates as cert

from .config import config_from_dict
from .evaluate import load_encoder
from .probes import extract_features, fit_linear_probe
from .store import RunRecord, Store
from .train import load_run_data, resolve_device

PRIOR_SIGMAS = (0.003, 0.01, 0.03, 0.1)  # σ_p of the probe's prior; each is one member of the union bound
P_MIN = 1e-4  # bounded cross-entropy: log-probabilities clipped at ln p_min, then divided by ln(1/p_min)
N_BOUND = 5000  # fresh examples in S for generated data


def _samples(cfg: Any, data: Any, n_bound: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(x_S, y_S, x_T, y_T, how): the bound sample and the held-out sample, both independent of training."""
    if data.generator is not None:
        g = torch.Generator().manual_seed(cfg.seed * 7919 + 77_777)  # a stream no split of the run uses
        fresh = data.generator.sample(data.generator.balanced_labels(n_bound, g), g)
        how = f"S: {n_bound} fresh draws of the run's synthetic generator; T: the test split (n={data.x_test.shape[0]})"
        return fresh.x.to(data.x_test.device), fresh.y.to(data.x_test.device), data.x_test, data.y_test, how
    perm = torch.randperm(data.x_test.shape[0], generator=torch.Generator().manual_seed(cfg.seed)).to(data.x_test.device)
    half = data.x_test.shape[0] // 2
    s, t = perm[:half], perm[half:]
    how = f"S: a random half of the test split (n={half}); T: the other half (n={t.numel()})"
    return data.x_test[s], data.y_test[s], data.x_test[t], data.y_test[t], how


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    """[x | 1]: the probe's bias as the weight of a last input of 1."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)


def _kl_to_prior(mu: torch.Tensor, rho: torch.Tensor, mu0: torch.Tensor, sigma_p: float) -> torch.Tensor:
    """KL(N(mu, diag e^{2 rho}) ‖ N(mu0, sigma_p² I)), differentiable (the surrogate's; the
    certificate uses bounds.certificates.gaussian_kl in float64)."""
    return 0.5 * ((rho.exp() / sigma_p) ** 2 + ((mu - mu0) / sigma_p) ** 2 - 1 - 2 * (rho - math.log(sigma_p))).sum()


def _sample_errors(x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, draws: int, g: torch.Generator, chunk: int = 64) -> np.ndarray:
    """The error on (x, y) of each of ``draws`` probes (flattened [W | b]) drawn from N(mu, diag sigma²)."""
    d = x.shape[1]
    classes = mu.numel() // (d + 1)
    errors = []
    x1 = _with_bias(x)
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        w = mu + sigma * torch.randn(m, mu.numel(), generator=g, dtype=mu.dtype)
        logits = torch.einsum("nd,mkd->mnk", x1, w.view(m, classes, d + 1))
        errors.append((logits.argmax(2) != y).double().mean(1))
    return torch.cat(errors).numpy()


def _bounded_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -F.log_softmax(logits, 1).gather(1, y[:, None]).clamp_min(math.log(P_MIN)).mean() / math.log(1 / P_MIN)


def _optimise_posterior(x: torch.Tensor, y: torch.Tensor, mu0: torch.Tensor, sigma_p: float, delta_pb: float, steps: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and σ of the posterior, by Adam on the McAllester surrogate (one sampled probe per step)."""
    n, d = x.shape
    classes = mu0.numel() // (d + 1)
    x1 = _with_bias(x)
    mu = mu0.clone().requires_grad_(True)
    rho = torch.full_like(mu0, math.log(sigma_p)).requires_grad_(True)  # σ = e^ρ, started at the prior's σ
    opt = torch.optim.Adam([mu, rho], lr=0.01)
    constant = math.log(2 * math.sqrt(n) / delta_pb)
    for _ in range(steps):
        sigma = rho.exp()
        w = mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
        kl = _kl_to_prior(mu, rho, mu0, sigma_p)
        loss = _bounded_ce(x1 @ w.view(classes, d + 1).T, y) + torch.sqrt((kl + constant) / (2 * n))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mu.detach(), rho.detach().exp()


def certify(record: RunRecord, store: Store | None = None, n_bound: int = N_BOUND, draws: int = 1000, delta: float = cert.DELTA,
            delta_mc: float = cert.DELTA_MC, prior_sigmas: Sequence[float] = PRIOR_SIGMAS, steps: int = 500,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Certifies the run's encoder + linear probe; stores the rows and the two checks when
    ``store`` is given. Returns the certificate, the test-set bound, the measured errors,
    every constant and the wall time."""
    t0 = time.perf_counter()
    cfg = config_from_dict(record.config)
    device = resolve_device(cfg.device)
    data = load_run_data(cfg).to(device)
    model = load_encoder(record, data.image_shape).to(device).eval()
    k = data.num_classes
    x_s, y_s, x_t, y_t, how = _samples(cfg, data, n_bound)
    # Features once: the encoder is fixed, so every sampled probe reuses them (float64 on the CPU).
    f_train, f_s, f_t = (extract_features(model, x).double().cpu() for x in (data.x_train, x_s, x_t))
    y_train, y_s, y_t = data.y_train.cpu(), y_s.cpu(), y_t.cpu()
    probe = fit_linear_probe(f_train, y_train, k, cfg.eval.linear_steps, cfg.eval.linear_weight_decay)
    # Fold the standardisation into the weights: logits = [W/std | b − W·mean/std] · [h | 1].
    w0 = probe.head.weight / probe.std
    mu0 = torch.cat([w0, (probe.head.bias - w0 @ probe.mean)[:, None]], 1).flatten().double()
    n = f_s.shape[0]
    delta_pb = (delta - delta_mc) / len(prior_sigmas)
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 31)
    candidates = []
    for sigma_p in prior_sigmas:
        mu, sigma = _optimise_posterior(f_s, y_s, mu0, sigma_p, delta_pb, steps, g)
        errors = _sample_errors(f_s, y_s, mu, sigma, draws, g)
        kl = cert.gaussian_kl(mu.numpy(), sigma.numpy(), mu0.numpy(), sigma_p)
        bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(float(errors.mean()), draws, delta_mc), kl, n, delta_pb)
        candidates.append((bound, sigma_p, mu, sigma, float(errors.mean()), kl))
        if log:
            log(f"  prior sigma {sigma_p:g}: KL {kl:.1f}, Gibbs error on S {errors.mean():.4f}, bound {bound:.4f}")
    _, sigma_p, mu, sigma, _, kl = min(candidates, key=lambda c: c[0])
    # Fresh draws for the reported estimate: the choice above used its own, so the Monte-Carlo
    # bound is paid once (δ'), not once per candidate.
    mean_error = float(_sample_errors(f_s, y_s, mu, sigma, draws, g).mean())
    bound = cert.pac_bayes_kl_bound(cert.mc_error_upper(mean_error, draws, delta_mc), kl, n, delta_pb)
    gibbs_t = float(_sample_errors(f_t, y_t, mu, sigma, draws, g).mean())  # the bounded quantity, estimated on T
    x1_t = _with_bias(f_t)
    mean_errors = int((x1_t @ mu.view(k, -1).T).argmax(1).ne(y_t).sum())  # the posterior mean, a fixed classifier
    n_t = f_t.shape[0]
    seconds = time.perf_counter() - t0
    protocol = (f"{how}; prior N(probe fitted on the train split, sigma_p^2 I) over the {mu.numel()} probe weights and biases, encoder fixed; "
                f"sigma_p from {{{', '.join(f'{s:g}' for s in prior_sigmas)}}} (union bound); posterior N(mu, diag sigma^2) by Adam, {steps} steps, "
                f"bounded CE p_min={P_MIN:g}; {draws} posterior draws; delta={delta:g} (Monte Carlo {delta_mc:g}, PAC-Bayes {delta_pb:.4g} per prior)")
    check = cert.certificate_check(mean_error, draws, kl, n, k, gibbs_t, priors=len(prior_sigmas), delta=delta, delta_mc=delta_mc,
                                   protocol=protocol, prior_sigma=sigma_p, seconds=seconds)
    floor = cert.holdout_check(mean_errors, n_t, k, mean_errors / n_t, delta, protocol=f"posterior-mean probe, fixed before T; {how}")
    result = {"bound": bound, "kl": kl, "n": n, "prior_sigma": sigma_p, "gibbs_error_s": mean_error, "gibbs_error_t": gibbs_t,
              "mean_error_t": mean_errors / n_t, "test_set_bound": floor.bound, "chance": 1 - 1 / k, "seconds": seconds, "protocol": protocol,
              "checks": [check, floor]}
    if store is not None:
        store.add_measurements(record.id, [
            ("certificate_downstream_error", bound, f"PAC-Bayes-kl certificate on the Gibbs error, {protocol}"),
            ("certificate_gibbs_error", gibbs_t, f"Gibbs classifier (probe ~ posterior per prediction), error on T, mean of {draws} draws; {how}"),
            ("certificate_test_set_bound", floor.bound, f"Langford test-set bound (Clopper-Pearson), posterior-mean probe, delta={delta:g}; {how}"),
            ("certificate_seconds", seconds, "wall time of `clbounds certify`"),
        ])
        store.add_bound_checks(record.id, [c.to_row() for c in (check, floor)])
    return result


CONTRASTIVE_PRIOR_SIGMAS = (0.001, 0.003, 0.01)  # σ_p of the encoder's weights; each one member of the union bound
NT_XENT_METHODS = ("simclr", "ssa_clr")  # trained on the NT-Xent loss that the contrastive certificate bounds


def _unit_views(augment: Any, x: torch.Tensor, batch: int, g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The units: disjoint batches of ``batch`` inputs, each with its two independent views."""
    return [(augment(x[i : i + batch], g), augment(x[i : i + batch], g)) for i in range(0, x.shape[0] - batch + 1, batch)]


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
    from torch.func import functional_call

    from clbounds.theory.losses import info_nce
    from clbounds.theory.shift import infonce_range

    from .augment import Augment
    from .config import ConfigError

    t0 = time.perf_counter()
    cfg = config_from_dict(record.config)
    if cfg.method.name not in NT_XENT_METHODS:
        raise ConfigError(f"the contrastive certificate bounds the NT-Xent risk; run {record.id} was trained with {cfg.method.name} (choose a run of {', '.join(NT_XENT_METHODS)})")
    device = resolve_device(cfg.device)
    data = load_run_data(cfg).to(device)
    if data.generator is None:
        raise ConfigError(f"the contrastive certificate needs fresh draws of a generator ({units} batches of {batch}); {cfg.data.name} has none")
    model = load_encoder(record, data.image_shape).to(device).eval()
    tau = cfg.method.temperature
    low, high = infonce_range(2 * batch - 2, tau)
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 55_555)
    fresh = data.generator.sample(data.generator.balanced_labels(units * batch, g), g).x.to(device)
    s_units, t_units = _unit_views(augment, fresh, batch, g), _unit_views(augment, data.x_test, batch, g)

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    mu0 = torch.cat([p.detach().flatten() for _, p in model.named_parameters()]).double()
    head = [i for i, n in enumerate(names) if n.startswith("projector.")]

    def loss(theta: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, (t.view(s) for t, s in zip(theta.float().split([math.prod(s) for s in shapes]), shapes))))
        projector = {names[i][len("projector."):]: params[names[i]] for i in head}
        z1, z2 = (functional_call(model.projector, projector, (functional_call(model, params, (x,)),)) for x in (x1, x2))
        return info_nce(z1, z2, tau)

    def gibbs_losses(mu: torch.Tensor, sigma: torch.Tensor, pairs: list) -> np.ndarray:
        with torch.no_grad():  # one posterior draw per unit
            return np.array([float(loss(mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype), x1, x2)) for x1, x2 in pairs])

    u = len(s_units)
    delta_pb = (delta - delta_mc) / len(prior_sigmas)
    candidates = []
    for sigma_p in prior_sigmas:
        mu = mu0  # the mean stays at the trained weights: moving 10^5 weights costs KL faster than it lowers the loss
        rho = torch.full_like(mu0, math.log(sigma_p)).requires_grad_(True)
        opt = torch.optim.Adam([rho], lr=0.01)
        constant = math.log(2 * math.sqrt(u) / delta_pb)
        for step in range(steps):  # McAllester surrogate on the normalised loss, one unit and one draw per step
            x1, x2 = s_units[step % u]
            sigma = rho.exp()
            kl = _kl_to_prior(mu, rho, mu0, sigma_p)
            objective = (loss(mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype), x1, x2) - low) / (high - low) + torch.sqrt((kl + constant) / (2 * u))
            opt.zero_grad()
            objective.backward()
            opt.step()
        sigma = rho.detach().exp()
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
    how = f"S: {u} batches of {batch} fresh generator draws with two views each ({cfg.augment}); T: {len(t_units)} batches of the test split"
    protocol = (f"NT-Xent tau={tau:g} at batch {batch}, range [{low:.3f}, {high:.3f}]; {how}; prior N(trained weights, sigma_p^2 I) over the {mu.numel()} "
                f"encoder and head weights, BN statistics fixed; sigma_p from {{{', '.join(f'{s:g}' for s in prior_sigmas)}}} (union bound); posterior "
                f"N(trained weights, diag sigma^2), sigma by Adam, {steps} steps; one posterior draw per unit; delta={delta:g} (Monte Carlo {delta_mc:g}, PAC-Bayes {delta_pb:.4g} per prior)")
    check = cert.contrastive_certificate_check(mean_loss, u, kl, low, high, measured, priors=len(prior_sigmas), delta=delta, delta_mc=delta_mc,
                                               protocol=protocol, prior_sigma=sigma_p, seconds=seconds)
    result = {"bound": check.bound, "measured": measured, "deterministic": deterministic, "kl": kl, "units": u, "low": low, "high": high,
              "prior_sigma": sigma_p, "seconds": seconds, "protocol": protocol, "checks": [check]}
    if store is not None:
        store.add_measurements(record.id, [
            ("certificate_contrastive_risk", check.bound, f"PAC-Bayes-kl certificate on the Gibbs encoder's NT-Xent risk, {protocol}"),
            ("certificate_contrastive_gibbs_loss", measured, f"Gibbs encoder (weights ~ posterior per batch), NT-Xent tau={tau:g} batch {batch} on T; {how}"),
        ])
        store.add_bound_checks(record.id, [check.to_row()])
    return result
