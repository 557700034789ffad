"""The public theory API rejects what it cannot compute (issue #19, class 5).

Every public term of ``clbounds.theory`` is swept: each tensor argument gets NaN, inf and
integer, bool and complex dtypes; each number argument gets NaN, inf, a bool and a value
just outside its declared range. Each must raise a ``ValueError`` that names the term and
the argument, before any work starts. ``test_every_public_term_is_validated`` makes a new
public term without the decorator fail the suite.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest
import torch
from torch import nn

from clbounds.theory import validation
from clbounds.theory.validation import _kind, unchecked_values

MODULES = ["losses", "geometry", "information", "shift", "arora", "adversarial", "sharpness", "optimization"]


def _public_terms() -> list[tuple[str, object]]:
    out = []
    for name in MODULES:
        module = importlib.import_module(f"clbounds.theory.{name}")
        for attr in module.__all__:
            fn = getattr(module, attr)
            if inspect.isfunction(fn):
                out.append((f"{name}.{attr}", fn))
    return out


TERMS = _public_terms()
VALIDATED = [(n, f) for n, f in TERMS if hasattr(f, "__validated__")]


def _checked_arguments(fn) -> dict[str, str]:
    return {name: kind for name, p in inspect.signature(fn).parameters.items() if (kind := _kind(p.annotation)[0])}


def test_every_public_term_is_validated():
    missing = [name for name, fn in TERMS if _checked_arguments(fn) and not hasattr(fn, "__validated__")]
    assert missing == [], f"public terms without @validated: {missing}"
    assert len(VALIDATED) >= 45


def _valid_arguments(fn) -> dict[str, object]:
    """Arguments that pass the decorator's checks (the body never runs in these tests)."""
    spec = fn.__validated__
    args = {}
    for name, p in inspect.signature(fn).parameters.items():
        kind = _kind(p.annotation)[0]
        if kind == "tensor":
            args[name] = torch.zeros(4, dtype=torch.int64) if name in spec["labels"] else torch.rand(4, 3, dtype=torch.float64)
        elif kind == "tensors":
            args[name] = (torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64))
        elif kind == "float":
            args[name] = 0.5
        elif kind == "int":
            args[name] = 3
        elif p.default is inspect.Parameter.empty:
            args[name] = object()  # a model, a callable, batches: not the decorator's business
    return args


def _cases():
    for term, fn in VALIDATED:
        spec = fn.__validated__
        for name, kind in _checked_arguments(fn).items():
            if kind == "tensor" and name in spec["labels"]:
                yield term, name, torch.zeros(4), f"{name} must be an integer tensor of class labels"
                yield term, name, torch.tensor([0, -1, 0, 0]), f"{name} must be >= 0"
                yield term, name, torch.zeros(4, dtype=torch.bool), f"{name} must be an integer tensor of class labels"
            elif kind in ("tensor", "tensors"):
                good = torch.rand(4, 3, dtype=torch.float64)
                nan, inf = good.clone(), good.clone()
                nan[1, 2], inf[0, 0] = float("nan"), float("inf")
                wrap = (lambda t: (t, good)) if kind == "tensors" else (lambda t: t)
                shown = re.escape(f"{name}[0]") if kind == "tensors" else name
                yield term, name, wrap(nan), f"{shown} has 1 (non-finite|NaN) entry"
                if name not in spec["infinite"]:
                    yield term, name, wrap(inf), f"{shown} has 1 non-finite entry"
                for dtype in (torch.int64, torch.bool, torch.complex64):
                    yield term, name, wrap(torch.ones(4, 3, dtype=dtype)), f"{shown} must be a real floating-point tensor"
            else:
                if kind == "float":
                    yield term, name, float("nan"), f"{name} must be finite"
                    yield term, name, float("inf"), f"{name} must be finite"
                else:
                    yield term, name, 2.5, f"{name} must be an integer"
                yield term, name, True, f"{name} must be (a real number|an integer)"
                for condition in spec["bounds"].get(name, "").split(",") if spec["bounds"].get(name) else ():
                    symbol, limit = condition.split()
                    outside = {">": float(limit), ">=": float(limit) - 1, "<": float(limit), "<=": float(limit) + 1}[symbol]
                    yield term, name, int(outside) if kind == "int" else outside, f"{name} must be .*{symbol} {limit}"


CASES = list(_cases())


@pytest.mark.parametrize("term, argument, value, words", CASES, ids=[f"{t}-{a}-{i}" for i, (t, a, _, _) in enumerate(CASES)])
def test_bad_arguments_raise_a_value_error_naming_the_argument(term, argument, value, words):
    fn = dict(VALIDATED)[term]
    args = _valid_arguments(fn) | {argument: value}
    with pytest.raises(ValueError, match=f"^{fn.__name__}: {words}"):
        fn(**args)


def test_the_sweep_covers_the_terms_the_attack_named():
    named = {"losses.info_nce", "losses.barlow_twins", "losses.cacr", "geometry.class_centers", "geometry.intra_class_spread",
             "geometry.center_separation", "geometry.alignment", "geometry.uniformity", "shift.mmd2", "adversarial.pgd"}
    assert named <= {t for t, *_ in CASES}
    params = {("losses.barlow_twins", "lambd"), ("geometry.uniformity", "t"), ("geometry.center_separation", "r"),
              ("shift.mmd2", "bandwidth"), ("losses.cacr", "tau_pos"), ("adversarial.pgd", "eps"), ("adversarial.pgd", "alpha"),
              ("geometry.uniformity", "block_size")}
    assert params <= {(t, a) for t, a, *_ in CASES}


def test_mmd2_is_scale_free_from_1e_minus_20_to_1e20():
    from clbounds.theory.shift import mmd2

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g) + 0.5
    reference = mmd2(x.double(), y.double())
    for scale in (1e-20, 1e20):
        assert float(mmd2(scale * x, scale * y)) == pytest.approx(float(reference), rel=1e-4)
        assert float(mmd2(scale * x, scale * y, bandwidth=2 * scale)) == pytest.approx(float(mmd2(x.double(), y.double(), bandwidth=2.0)), rel=1e-4)


def test_pgd_refuses_a_label_the_model_has_no_logit_for():
    from clbounds.theory.adversarial import pgd

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.rand(4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"y holds the label 3, but the model gives 3 logits"):
        pgd(model, x, torch.tensor([0, 1, 2, 3]), steps=1)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x has 1 non-finite entry"):
        pgd(model, x, torch.tensor([0, 1, 2, 0]), steps=1)


def test_values_go_unchecked_only_inside_the_training_loop(tiny_config, store, monkeypatch):
    """The trainer skips the NaN scan (a GPU sync per step) and checks its own loss and weights."""
    from clbounds.theory.losses import info_nce

    z = torch.rand(4, 3)
    z[0, 0] = float("nan")
    with unchecked_values():
        assert torch.isnan(info_nce(z, z))  # the caller's responsibility here
        with pytest.raises(ValueError, match="floating-point"):
            info_nce(z.long(), z.long())  # dtypes are still checked: they cost nothing
    with pytest.raises(ValueError, match="z1 has 1 non-finite entry"):
        info_nce(z, z)

    import clbounds.experiments.training.loop as train_mod

    seen = []
    real = train_mod.ssl_loss

    def ssl_loss(cfg):
        loss = real(cfg)

        def checked(*a, **k):
            seen.append(validation._check_values.get())
            return loss(*a, **k)
        return checked

    monkeypatch.setattr(train_mod, "ssl_loss", ssl_loss)
    train_mod.train(tiny_config, store, progress=False)
    assert seen and not any(seen)


def test_a_learnable_temperature_as_a_0d_tensor_is_accepted_and_checked():
    from clbounds.theory.losses import info_nce

    z = torch.randn(4, 3)
    tau = torch.tensor(0.5, requires_grad=True)
    info_nce(z, z.flip(0), tau).backward()
    assert tau.grad is not None
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(z, z, torch.tensor(-0.5))
    with pytest.raises(ValueError, match="temperature must be finite"):
        info_nce(z, z, torch.tensor(float("nan")))
    with unchecked_values(), pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(z, z, torch.tensor(0.0))  # a parameter, not data: checked inside the training loop too


def test_js_divergence_keeps_its_zero_step_discriminator():
    from clbounds.theory.shift import js_divergence

    x, y = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64) + 1
    value = float(js_divergence(x, y, steps=0, generator=torch.Generator().manual_seed(0)))
    assert 0 <= value < 0.05  # the discriminator at its small random start (weights 0.01·N(0, 1)): near log 2 − log 2


def test_the_api_measure_reports_progress_on_stderr_by_default_and_log_false_silences_it(capsys):
    import torch
    from torch import nn

    import clbounds

    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8))
    data = (torch.rand(24, 3, 8, 8), torch.arange(24) % 3, torch.rand(12, 3, 8, 8), torch.arange(12) % 3)
    options = {"terms": ["geometry"], "n_samples": 12, "views": 2, "center_views": 1, "controls": False}
    clbounds.measure(net, data, **options)
    captured = capsys.readouterr()
    assert "measured geometry (1/1)" in captured.err and captured.out == ""
    clbounds.measure(net, data, log=False, **options)
    assert capsys.readouterr().err == ""
