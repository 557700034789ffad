"""The measure cost model (experiments/measurement/cost.py) against the backbone hooks of
benchmarks/measure_scaling.py: every group and control, exact where the model says exact."""

from __future__ import annotations

import pytest
import torch

from benchmarks.measure_scaling import timed_measure
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.cost import Estimate, Sizes, ascent_passes, group_passes, plan_passes, skipped_ascents, units
from clbounds.experiments.training.runs import build_encoder, load_run_data

from conftest import tiny_raw

#: measure.sequential=false: the full-budget path, whose passes the model counts (a stopped
#: ascent is subtracted from the rate by Estimate, tested below).
CHEAP = {"n_samples": 24, "batch_size": 16, "views": 2, "sigma_per_class": 4, "hessian_iters": 2, "trace_samples": 1, "sharpness_steps": 1,
         "sharpness_m": 4, "attack_steps": 2, "pac_bayes_units": 2, "center_views": 1, "sequential": False}


@pytest.mark.slow
@pytest.mark.parametrize("sharpness_batches", [1, 2])
def test_the_cost_model_counts_the_backbone_images_of_every_group_and_control(sharpness_batches):
    raw = tiny_raw(data__n_train=64, data__n_test=40, encoder__arch="convnet")
    raw["measure"] = CHEAP | {"sharpness_batches": sharpness_batches, "n_samples": 40 if sharpness_batches == 2 else 24}
    cfg = config_from_dict(raw)
    data = load_run_data(cfg)
    torch.manual_seed(0)
    model, init = build_encoder(cfg, data.image_shape).eval(), build_encoder(cfg, data.image_shape).eval()
    records = timed_measure(cfg, data, model, init, {"n": cfg.measure.n_samples}, log=lambda s: None)
    sizes = Sizes(n_train=data.x_train.shape[0], n_test=data.x_test.shape[0])
    # in measure's order: the pass cache charges the test inputs and views to the first reader
    expected = plan_passes([(r["control"], r["group"]) for r in records if r["group"] != "context"], cfg, sizes)
    checked = set()
    for r in records:
        if r["control"] == "random_init_bn":  # its recalibrated copy carries a copied hook the counter cannot read
            continue
        if r["group"] == "context":  # the benchmark's own step: views and delta are made in pixel space
            assert (r["forward_images"], r["backward_images"], r["hvp_images"]) == (0, 0, 0)
            continue
        forward, backward, hvp = expected[(r["control"], r["group"])]
        assert (r["forward_images"], r["backward_images"]) == (forward, backward), (r["control"], r["group"])
        assert r["hvp_images"] <= hvp and (hvp == 0) == (r["hvp_images"] == 0), (r["control"], r["group"])  # Lanczos may stop early
        checked.add((r["control"], r["group"]))
    assert {("", "sharpness"), ("", "adversarial"), ("", "bounds"), ("random_init", "sharpness"), ("random_init", "adversarial"), ("shuffled_labels", "bounds")} <= checked


def test_the_estimate_is_calibrated_on_the_groups_done():
    cfg = config_from_dict({"measure": {"n_samples": 500, "views": 8}})
    sizes = Sizes(n_train=1000, n_test=5000)
    plan = [("", "losses"), ("", "geometry"), ("random_init", "geometry")]
    est = Estimate(plan, cfg, sizes, seconds_per_unit=1e-3)
    # losses embeds views 1 and 2 (1000 images), geometry the centres' 4 x 1000 and the other
    # 1 + 6 tensors of 500 (its views 1 and 2 are cached), the control all of its own
    assert est.seconds_left() == pytest.approx(1e-3 * (1000 + 7500 + 8500))
    est.finished("", "losses", seconds=2.0)  # 1000 units in 2 s: 2 ms per unit from now on
    assert est.seconds_left() == pytest.approx(2e-3 * 16000) and est.text() == "about 32 s left"
    # the shuffled-labels control measures the encoder's model again: its geometry is all cached
    passes = plan_passes([("", "geometry"), ("shuffled_labels", "geometry"), ("random_init", "geometry")], cfg, sizes)
    assert list(passes.values()) == [(8500, 0, 0), (0, 0, 0), (8500, 0, 0)]
    assert units((1, 1, 1)) == pytest.approx(12.5)
    with pytest.raises(ValueError, match="no cost model"):
        group_passes("nonsense", cfg, sizes)


def test_every_term_group_has_a_cost_formula():
    from clbounds.experiments.measurement.cost import GROUP_PASSES
    from clbounds.experiments.measurement.registry import GROUP_NAMES

    assert set(GROUP_PASSES) == set(GROUP_NAMES)


def test_measure_prints_an_estimate_per_group_and_the_steps_of_a_long_group():
    from torch import nn

    import clbounds

    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8))
    data = (torch.rand(24, 3, 8, 8), torch.arange(24) % 3, torch.rand(12, 3, 8, 8), torch.arange(12) % 3)
    lines: list[str] = []
    clbounds.measure(net, data, terms=["geometry", "adversarial"], n_samples=12, views=2, center_views=1, attack_steps=1, batch_size=4,
                     log=lines.append)
    assert lines[0].startswith("  to measure: 2 groups and the controls, about ")
    assert any(line.startswith("  measured adversarial (2/2):") and line.endswith(" left)") for line in lines)
    assert "    adversarial: nearest-centre PGD (4/5)" in lines and "    random_init/adversarial: contrastive attack (3/3)" in lines  # the controls too
    assert any(line.startswith("  measured control random_init/geometry (1/2):") for line in lines)


def test_a_skipped_ascent_is_not_counted_in_the_rate_of_the_estimate():
    cfg = config_from_dict(tiny_raw() | {"measure": {"batch_size": 16, "pac_bayes_units": 4, "sharpness_steps": 5}})
    sizes = Sizes(n_train=128, n_test=64)
    forward, backward, _ = ascent_passes(cfg, sizes)
    assert (forward, backward) == (6 * 2 * 16 * 4, 5 * 2 * 16 * 4)  # (k + 1) and k passes over 4 batches of 16 pairs
    plan = [("", "losses"), ("", "bounds")]
    full = units(plan_passes(plan, cfg, sizes)[("", "bounds")])
    assert full > 3 * units(ascent_passes(cfg, sizes))  # the three radii are part of the group
    rows = [("random_init/sharp_ascent_skipped@rho_factor=1", 1.0, ""), ("random_init/sharp_ascent_skipped@rho_factor=2", 0.0, ""), ("sharp_ascent_skipped@rho_factor=0.5", 1.0, "")]
    assert skipped_ascents(rows) == 2
    estimate = Estimate(plan, cfg, sizes, seconds_per_unit=1.0)
    estimate.finished("", "bounds", 10.0, skipped_ascents=3)
    left = units(group_passes("losses", cfg, sizes))
    assert estimate.seconds_left() == pytest.approx(10.0 / (full - 3 * units(ascent_passes(cfg, sizes))) * left)
