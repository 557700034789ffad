"""One pass, many terms (issue 31, item 1): the groups read the embeddings of the test inputs
and their views from one backbone pass per tensor and per model, with the same rows as
before, and never across weights that changed in place."""

from __future__ import annotations

import math

import torch

from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.context import Context, make_context
from clbounds.experiments.measurement.measure import measure_context
from clbounds.experiments.measurement.registry import default_groups
from clbounds.experiments.training.runs import build_encoder, load_run_data

from conftest import tiny_raw


def _measure(monkeypatch, share: bool) -> tuple[dict[str, float], int]:
    """Every group and control on a tiny run; the rows and the images the backbones saw."""
    if not share:
        monkeypatch.setattr(Context, "_pass_cache", lambda self: {})  # an empty cache at every read
    raw = tiny_raw(data__n_train=96, data__n_test=48, encoder__arch="convnet")
    raw["measure"] = {"n_samples": 32, "batch_size": 16, "views": 3, "sigma_per_class": 4, "hessian_iters": 2, "trace_samples": 1, "sharpness_steps": 1,
                      "sharpness_m": 4, "attack_steps": 1, "pac_bayes_units": 2, "center_views": 1}
    cfg = config_from_dict(raw)
    data = load_run_data(cfg)
    torch.manual_seed(0)
    model, init = build_encoder(cfg, data.image_shape).eval(), build_encoder(cfg, data.image_shape).eval()
    seen = [0]

    def count(module, args, output):
        seen[0] += args[0].shape[0]

    hooks = [m.register_forward_hook(count) for m in (model, init)]
    stored: list = []
    ctx = make_context(cfg, data, model, init, torch.device("cpu"))
    measure_context(ctx, default_groups(cfg), write=stored.extend)
    for h in hooks:
        h.remove()
    monkeypatch.undo()
    return {name: value for name, value, _ in stored}, seen[0]


def test_shared_passes_give_the_same_rows_with_fewer_backbone_images(monkeypatch):
    shared, images_shared = _measure(monkeypatch, share=True)
    separate, images_separate = _measure(monkeypatch, share=False)
    assert shared.keys() == separate.keys()
    differ = {k: (shared[k], separate[k]) for k in shared
              if not (math.isclose(shared[k], separate[k], rel_tol=1e-5, abs_tol=1e-6) or (math.isnan(shared[k]) and math.isnan(separate[k])))}
    assert not differ, differ
    assert images_shared < images_separate, (images_shared, images_separate)
    # the random-init control measures every row its checks read (adversarial: checked_only)
    from clbounds.bounds import robust_cl

    assert {f"random_init/{t}" for t in robust_cl.REQUIRED_TERMS} <= shared.keys(), sorted({f"random_init/{t}" for t in robust_cl.REQUIRED_TERMS} - shared.keys())


def _tiny_context(arch: str | None = None) -> tuple[torch.nn.Module, Context]:
    """A small untrained encoder and its measure context (the encoder is its own initialisation)."""
    cfg = config_from_dict(tiny_raw(data__n_train=32, data__n_test=16, **({"encoder__arch": arch} if arch else {})))
    data = load_run_data(cfg)
    torch.manual_seed(0)
    model = build_encoder(cfg, data.image_shape).eval()
    return model, make_context(cfg, data, model, model, torch.device("cpu"))


def test_a_weight_changed_in_place_is_not_read_from_the_cache():
    model, ctx = _tiny_context()
    before = ctx.projections(ctx.views[1]).clone()
    assert torch.equal(ctx.projections(ctx.views[1]), before)  # read from the cache
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    after = ctx.projections(ctx.views[1])
    assert not torch.allclose(after, before)
    with torch.no_grad():
        fresh = model.projector(model(ctx.views[1].float()))
    torch.testing.assert_close(after, fresh)
    assert ctx._which(ctx.views[1]) == 1 and ctx._which(ctx.x) == "x" and ctx._which(ctx.views[1].clone()) is None


def test_weights_restored_bitwise_keep_the_cache_and_a_batchnorm_statistic_empties_it():
    model, ctx = _tiny_context("convnet")
    seen = [0]
    hook = model.register_forward_hook(lambda module, args, output: seen.__setitem__(0, seen[0] + args[0].shape[0]))
    before = ctx.projections(ctx.views[0]).clone()
    p = next(model.parameters())
    saved = p.detach().clone()
    with torch.no_grad():  # an ascent and its bitwise restore: the version counter moves twice
        p.add_(1.0)
        p.copy_(saved)
    assert torch.equal(ctx.projections(ctx.views[0]), before) and seen[0] == ctx.x.shape[0]  # one pass only
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    bn.running_mean.add_(1.0)  # what a forward pass in train mode does
    after = ctx.projections(ctx.views[0])
    assert seen[0] == 2 * ctx.x.shape[0] and not torch.allclose(after, before)
    hook.remove()


def test_a_cached_tensor_changed_in_place_by_a_caller_is_recomputed():
    model, ctx = _tiny_context()
    before = ctx.projections(ctx.views[0]).clone()
    ctx.projections(ctx.views[0]).mul_(0)  # a careless caller
    torch.testing.assert_close(ctx.projections(ctx.views[0]), before)
    features, _ = ctx.train_view_embeddings()
    expected = features.clone()
    features.fill_(0)
    torch.testing.assert_close(ctx.train_view_embeddings()[0], expected)
