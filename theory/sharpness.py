"""Sharpness and curvature of a loss surface around the current weights (PAPERS.md §2).

SSA-CLR bounds the downstream loss by the *sharpness-aware* unsupervised loss
max_{‖ε‖≤ρ} L(θ+ε); this module measures the sharpness term S_ρ = max_{‖ε‖≤ρ} L(θ+ε) − L(θ),
its adaptive (ASAM) and average-case variants, and the Hessian quantities that govern it for
small ρ (S_ρ ≈ ρ²·λ_max/2 at a minimum).

Conventions (DESIGN.md): ``loss_fn(model, batch) -> scalar tensor`` and ``batches`` is an
iterable of whatever ``loss_fn`` takes. The loss is the *mean of loss_fn over the batches*,
L(θ) = (1/n_b) Σ_b loss_fn(model, b), so equal-sized batches of a per-sample mean give the
full-data mean. Only parameters with ``requires_grad`` are perturbed or differentiated.

Every function leaves the model exactly as it found it, bitwise: weights, buffers (BatchNorm
running statistics and ``num_batches_tracked``), train/eval flags and ``.grad``. Losses are
evaluated in the mode the caller set; in train mode BatchNorm uses batch statistics (so the
running statistics, which the extra forward passes do update, are restored afterwards and never
influence a value), while dropout makes the values random: call ``model.eval()`` first for a
deterministic measurement. Random draws use ``generator`` (any device), or a fresh generator
seeded with 0 when it is None, so results are reproducible and the global RNG is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from clbounds.theory.validation import validated

__all__ = ["sharpness", "m_sharpness", "average_sharpness", "hessian_top_eigenvalue", "hessian_trace"]

LossFn = Callable[[nn.Module, Any], torch.Tensor]


# --------------------------------------------------------------------------- private helpers


@contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Snapshot every parameter, buffer, ``.grad`` and train flag; restore them bitwise on exit.

    Tensors are restored into the *original* objects (re-attached first if a module replaced
    one), so optimisers and other references to them stay valid.
    """
    tensors: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        for name, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            tensors.append((module, name, t, t.detach().clone()))
    grads = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, original, saved in tensors:
                if getattr(module, name) is not original:
                    setattr(module, name, original)
                original.copy_(saved)
            for p, grad, saved in grads:
                p.grad = grad
                if grad is not None:
                    grad.copy_(saved)
        for m, training in modes:
            m.training = training


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no parameters with requires_grad=True")
    return params


def _as_list(batches: Iterable[Any]) -> list[Any]:
    # Several passes are needed, so a one-shot iterator is materialised once.
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty: the loss is a mean over at least one batch")
    return batches


def _flat(tensors: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one vector; None (a parameter the loss does not use) is 0."""
    return torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(tensors, like)])


def _theta(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """The current parameter values as a new flat vector, outside autograd."""
    with torch.no_grad():
        return torch.cat([p.reshape(-1) for p in params])


def _set_params(params: Sequence[nn.Parameter], flat: torch.Tensor) -> None:
    """Write a flat vector into the parameters in place (the caller restores them)."""
    with torch.no_grad():
        offset = 0
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def _mean_loss(model: nn.Module, loss_fn: LossFn, batches: list[Any]) -> float:
    # Not under no_grad: a loss_fn may need autograd internally (e.g. an inner attack).
    total = sum(loss_fn(model, b).detach() for b in batches)
    return float(total) / len(batches)


def _loss_and_grad(
    model: nn.Module, loss_fn: LossFn, batches: list[Any], params: Sequence[nn.Parameter]
) -> tuple[float, torch.Tensor]:
    """Mean loss and its flat gradient w.r.t. ``params``, one batch graph alive at a time.

    ``torch.autograd.grad`` is used instead of ``backward`` so ``.grad`` is never touched.
    """
    total = 0.0
    grad = torch.zeros_like(_theta(params))  # a loss constant in θ has gradient 0
    for b in batches:
        loss = loss_fn(model, b)
        total += float(loss.detach())
        if loss.requires_grad:
            grad = grad + _flat(torch.autograd.grad(loss, params, allow_unused=True), params)
    return total / len(batches), grad / len(batches)


def _hvp(
    model: nn.Module, loss_fn: LossFn, batches: list[Any], params: Sequence[nn.Parameter], v: torch.Tensor
) -> torch.Tensor:
    """Hessian-vector product H v of the mean loss by double backward (Pearlmutter 1994)."""
    out = torch.zeros_like(v)
    for b in batches:
        loss = loss_fn(model, b)
        if not loss.requires_grad:
            continue
        g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        # Gradients that are constant in θ (no grad_fn) contribute no curvature.
        pairs = [(gi, vi) for gi, vi in zip(g, _split(v, params)) if gi is not None and gi.requires_grad]
        if not pairs:
            continue
        dot = sum((gi * vi).sum() for gi, vi in pairs)
        out += _flat(torch.autograd.grad(dot, params, allow_unused=True), params)
    return out / len(batches)


def _hvp_operator(
    model: nn.Module, loss_fn: LossFn, batches: list[Any], params: Sequence[nn.Parameter]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ H v for the mean loss over ``batches``.

    With one batch the gradient graph is built once (create_graph) and kept, so each product
    is a single backward pass through it instead of a forward, a backward and a double
    backward. With several batches the graphs are rebuilt batch by batch (:func:`_hvp`), so
    at most one is alive at a time and memory does not grow with the number of batches.
    """
    if len(batches) > 1:
        return lambda v: _hvp(model, loss_fn, batches, params, v)
    loss = loss_fn(model, batches[0])
    g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True) if loss.requires_grad else ()
    # Gradients that are constant in θ (no grad_fn) contribute no curvature.
    live = [i for i, gi in enumerate(g) if gi is not None and gi.requires_grad]
    if not live:
        return torch.zeros_like

    def hvp(v: torch.Tensor) -> torch.Tensor:
        vs = _split(v, params)
        hv = torch.autograd.grad([g[i] for i in live], params, grad_outputs=[vs[i] for i in live], retain_graph=True, allow_unused=True)
        return _flat(hv, params)

    return hvp


def _split(flat: torch.Tensor, params: Sequence[nn.Parameter]) -> list[torch.Tensor]:
    sizes = [p.numel() for p in params]
    return [chunk.view_as(p) for chunk, p in zip(flat.split(sizes), params)]


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _randn(n: int, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Draw on the generator's device, then move: any generator works with any model device.
    return torch.randn(n, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def _rademacher(n: int, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    bits = torch.randint(0, 2, (n,), generator=generator, device=generator.device)
    return (2 * bits - 1).to(dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------- sharpness


@validated(rho=">= 0", steps=">= 1")
def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    rho: float,
    steps: int = 1,
    adaptive: bool = False,
    step_size: float | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> float:
    r"""Sharpness S_ρ = max_{‖ε‖≤ρ} L(θ+ε) − L(θ) of SSA-CLR (PAPERS.md §2, Foret et al. 2021 eq. 1).

    Estimated from below by projected normalised-gradient ascent. Write ε = T w with
    T = I (SAM) or T = diag(|θ| + η) (ASAM, Kwon et al. 2021 eq. 7; the ball becomes
    ‖T⁻¹ε‖ ≤ ρ). With g the gradient of L at θ + T w:

    - step 1 is the SAM / ASAM point w₁ = ρ·Tg/‖Tg‖, i.e. ε₁ = ρ·g/‖g‖ or ε₁ = ρ·T²g/‖Tg‖;
    - steps 2..``steps``: w ← Π_ρ(w + α·Tg/‖Tg‖), with Π_ρ the projection onto ‖w‖ ≤ ρ.

    The result is the largest L(θ+ε) − L(θ) over the visited points, clipped at 0 (ε = 0 is
    feasible, so the true maximum is ≥ 0). It is ≥ the one-step value, and on a convex loss
    each step never decreases the loss (the projected step has a non-negative inner product
    with the gradient), so more steps give a tighter estimate.

    The default step α = ρ is large on purpose: for a quadratic at its minimum the iteration
    is then a power iteration on I + A/‖Aw‖ and converges to ρ²·λ_max/2 geometrically, where
    a step of O(ρ/steps) would crawl. If the (scaled) gradient at θ vanishes exactly, the
    one-step direction is undefined: with ``steps == 1`` the estimate is 0, and with
    ``steps > 1`` the ascent starts from a random point of the sphere ‖w‖ = ρ (``generator``).

    Args:
        model: the network whose weights are perturbed (see the module docstring).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``.
        batches: an iterable of whatever ``loss_fn`` takes.
        rho: radius ρ ≥ 0.
        steps: number of ascent points (1 = SAM / ASAM).
        adaptive: ASAM's scale-invariant ball instead of the Euclidean one.
        step_size: α, the length of each normalised step in w-coordinates; default ρ.
        eta: η added to |θ| in T for ASAM. The PAPERS.md formula uses η = 0 (the default);
            the official ASAM code uses η = 0.01 and scales only parameters named "weight".
            With η = 0, parameters equal to 0 are not perturbed.
        generator: for the random start at a stationary point.

    Examples:
        >>> model = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(16, 3), torch.randn(16, 1)
        >>> loss_fn = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])
        >>> s1 = sharpness(model, loss_fn, [(x, y)], rho=0.05)
        >>> s5 = sharpness(model, loss_fn, [(x, y)], rho=0.05, steps=5)
        >>> 0 <= s1 <= s5
        True
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    alpha = rho if step_size is None else step_size
    batches = _as_list(batches)
    params = _trainable(model)
    if rho == 0:
        return 0.0
    with _preserved(model):
        theta = _theta(params)
        loss0, g = _loss_and_grad(model, loss_fn, batches, params)
        scale = theta.abs() + eta if adaptive else torch.ones_like(theta)
        gw = scale * g
        norm = gw.norm()
        if norm > 0:
            w = rho * gw / norm
        elif steps > 1 and bool((scale > 0).any()):
            w = _randn(theta.numel(), theta, _generator(generator)) * (scale > 0)
            w = rho * w / w.norm()
        else:
            return 0.0
        best = 0.0
        for k in range(steps):
            _set_params(params, theta + scale * w)
            if k == steps - 1:
                best = max(best, _mean_loss(model, loss_fn, batches) - loss0)
                break
            loss, g = _loss_and_grad(model, loss_fn, batches, params)
            best = max(best, loss - loss0)
            gw = scale * g
            norm = gw.norm()
            if norm == 0:
                break
            w = w + alpha * gw / norm
            w = w * torch.clamp(rho / w.norm(), max=1.0)
        return best


@validated(rho=">= 0", m=">= 1", steps=">= 1")
def m_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    rho: float,
    m: int,
    steps: int = 1,
    adaptive: bool = False,
    generator: torch.Generator | None = None,
) -> float:
    r"""m-sharpness (Foret et al. 2021 §4; Andriushchenko et al. 2023): the mean over
    sub-batches of m samples of each sub-batch's own sharpness,

        S_ρ^m = E_{S ⊂ batch, |S| = m} max_{‖ε‖≤ρ} L_S(θ+ε) − L_S(θ),

    each by :func:`sharpness` (its ``steps``, ``adaptive``). Every batch is a tuple (or list) of
    tensors that share their first dimension; it is cut into consecutive chunks of m (a last
    chunk of fewer is dropped). Each sub-batch gets its own worst-case ε, so S_ρ^m ≥ S_ρ on
    the whole batch for one-step SAM on a loss linear in θ, and m = the batch size is S_ρ.

    Examples:
        >>> model = torch.nn.Linear(3, 1, bias=False)
        >>> x = torch.randn(8, 3)
        >>> loss_fn = lambda mdl, b: mdl(b[0]).mean()     # linear in θ: S = ρ·‖mean of x‖ per (sub-)batch
        >>> whole, single = sharpness(model, loss_fn, [(x,)], 0.1), m_sharpness(model, loss_fn, [(x,)], 0.1, m=1)
        >>> round(whole, 5) == round(0.1 * x.mean(0).norm().item(), 5), round(single, 5) == round(0.1 * x.norm(dim=1).mean().item(), 5)
        (True, True)
    """
    subs = []
    for batch in _as_list(batches):
        parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        n = parts[0].shape[0]
        if any(p.shape[0] != n for p in parts):
            raise ValueError("every tensor of a batch must share its first dimension for m-sharpness")
        subs += [type(batch)(p[i : i + m] for p in parts) if isinstance(batch, (tuple, list)) else batch[i : i + m] for i in range(0, n - m + 1, m)]
    if not subs:
        raise ValueError(f"no sub-batch of m={m} samples: every batch is smaller")
    return sum(sharpness(model, loss_fn, [s], rho, steps=steps, adaptive=adaptive, generator=generator) for s in subs) / len(subs)


@validated(sigma=">= 0", samples=">= 1")
def average_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    sigma: float,
    samples: int = 8,
    generator: torch.Generator | None = None,
    antithetic: bool = True,
) -> float:
    r"""Average-case sharpness E_{ε~N(0,σ²I)} L(θ+ε) − L(θ) (PAPERS.md §2), by Monte Carlo.

    ``samples`` loss evaluations at θ+ε. With ``antithetic`` (default) they come in pairs
    ±ε, which leaves the estimate unbiased but cancels the first-order term gᵀε exactly, so
    away from a minimum the noise is O(σ²) instead of O(σ‖g‖). For a quadratic with Hessian A
    the expectation is σ²·tr(A)/2 at every θ.

    Examples:
        >>> model = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(16, 3), torch.randn(16, 1)
        >>> loss_fn = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])
        >>> g = torch.Generator().manual_seed(1)
        >>> s = average_sharpness(model, loss_fn, [(x, y)], sigma=0.01, samples=16, generator=g)
        >>> isinstance(s, float)
        True
    """
    batches = _as_list(batches)
    params = _trainable(model)
    gen = _generator(generator)
    with _preserved(model):
        theta = _theta(params)
        loss0 = _mean_loss(model, loss_fn, batches)
        total, done = 0.0, 0
        while done < samples:
            eps = sigma * _randn(theta.numel(), theta, gen)
            for sign in ((1.0, -1.0) if antithetic else (1.0,)):
                if done == samples:
                    break
                _set_params(params, theta + sign * eps)
                total += _mean_loss(model, loss_fn, batches) - loss0
                done += 1
        return total / samples


# --------------------------------------------------------------------------- Hessian


@validated(iters=">= 1", tol=">= 0")
def hessian_top_eigenvalue(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    iters: int = 100,
    tol: float = 1e-6,
    method: str = "lanczos",
    generator: torch.Generator | None = None,
) -> float:
    r"""Top eigenvalue λ_max of the Hessian ∇²L(θ) via Hessian-vector products (PAPERS.md §2).

    λ_max is the curvature that sets the sharpness at a minimum, S_ρ ≈ ρ²·λ_max/2. Hessian-
    vector products use double backward, so the Hessian is never formed.

    - ``"lanczos"``: Lanczos from a random unit vector with full re-orthogonalisation; the
      largest eigenvalue of the tridiagonal matrix (largest *algebraic* Ritz value) is returned.
      Stores up to ``iters`` vectors of the parameter size. Exact after n steps for n parameters.
    - ``"power"``: power iteration with a Rayleigh-quotient estimate. It converges to the
      eigenvalue of largest *magnitude*, with its sign, which is not λ_max when the most
      negative eigenvalue is larger in magnitude; if two eigenvalues ±λ tie, it does not
      converge and returns the last Rayleigh quotient.

    Both stop once the residual ‖Hv − λv‖ ≤ tol·|λ| (which bounds the distance from λ to an
    eigenvalue), or after ``iters`` Hessian-vector products.

    Examples:
        >>> model = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
        >>> loss_fn = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])
        >>> lam = hessian_top_eigenvalue(model, loss_fn, [(x, y)])
        >>> xb = torch.cat([x, torch.ones(64, 1)], 1)  # mse Hessian is 2·XᵀX/N for [w, b]
        >>> abs(lam - torch.linalg.eigvalsh(2 * xb.T @ xb / 64)[-1].item()) < 1e-4
        True
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    batches = _as_list(batches)
    params = _trainable(model)
    gen = _generator(generator)
    with _preserved(model):
        n = sum(p.numel() for p in params)
        v = _randn(n, params[0], gen)
        v = v / v.norm()
        hvp = _hvp_operator(model, loss_fn, batches, params)
        if method == "power":
            return _power(hvp, v, iters, tol)
        return _lanczos(hvp, v, min(iters, n), tol)


def _power(hvp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, iters: int, tol: float) -> float:
    lam = 0.0
    for _ in range(iters):
        hv = hvp(v)
        lam = float(v @ hv)
        if float((hv - lam * v).norm()) <= tol * abs(lam):
            break
        norm = hv.norm()
        if norm == 0:  # v lies in the null space: Hv = 0·v exactly
            return 0.0
        v = hv / norm
    return lam


def _lanczos(hvp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, k: int, tol: float) -> float:
    basis = torch.empty(k, v.numel(), dtype=v.dtype, device=v.device)
    basis[0] = v
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(k):
        w = hvp(basis[j])
        alphas.append(float(basis[j] @ w))
        # Full re-orthogonalisation (twice, "twice is enough") keeps the Ritz values free of
        # the spurious copies that plain three-term Lanczos produces in floating point.
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(w.norm())
        tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
        ritz, vectors = torch.linalg.eigh(tri)
        top = float(ritz[-1])
        # ‖H Qy − θ Qy‖ = β_j·|y_last| for the Ritz pair (θ, Qy).
        if beta * abs(float(vectors[-1, -1])) <= tol * abs(top) or j == k - 1 or beta == 0:
            return top
        betas.append(beta)
        basis[j + 1] = w / beta
    return top  # unreachable: the loop returns at j == k − 1


@validated(samples=">= 1")
def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    samples: int = 64,
    generator: torch.Generator | None = None,
) -> float:
    r"""Trace of the Hessian ∇²L(θ) by Hutchinson's estimator (PAPERS.md §2).

    tr(H) ≈ (1/S) Σ_s v_sᵀ H v_s with Rademacher v_s ∈ {±1}ⁿ. Unbiased, with variance
    2·Σ_{i≠j} H_ij² per sample, so it is exact for a diagonal Hessian. tr(H)·σ²/2 is the
    second-order term of the average sharpness.

    Examples:
        >>> model = torch.nn.Linear(3, 1, bias=False)
        >>> x = torch.eye(3).repeat(4, 1)  # orthogonal features: diagonal Hessian
        >>> loss_fn = lambda m, b: torch.nn.functional.mse_loss(m(b), torch.zeros(12, 1))
        >>> round(hessian_trace(model, loss_fn, [x], samples=4), 6)  # 2·XᵀX/12 = (2/3)·I
        2.0
    """
    batches = _as_list(batches)
    params = _trainable(model)
    gen = _generator(generator)
    with _preserved(model):
        n = sum(p.numel() for p in params)
        hvp = _hvp_operator(model, loss_fn, batches, params)
        total = 0.0
        for _ in range(samples):
            v = _rademacher(n, params[0], gen)
            total += float(v @ hvp(v))
        return total / samples
