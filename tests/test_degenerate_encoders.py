"""Encoders without learned structure get no informative check and no violation decided by noise (issue 27).

Three degenerate encoders go through the whole path (train, measure every default group with
its controls, evaluate every single-run check in ``bounds/``):

- **untrained**: trained with ``optim.lr=1e-9``, so its weights are its initial ones;
- **collapsed**: h = 10 + 0.01·h_trained, every input mapped near one point;
- **structureless**: trained on images of uniform noise whose labels are drawn independently.

None may get the verdict "informative" (a check that could only fail without learned
structure cannot testify that structure was learned), and none may be "violated" inside
its margin (a violation is a finding only beyond the sampling error).
"""

from __future__ import annotations

import textwrap

import torch
from torch import nn

from clbounds.bounds.common import verdict
from clbounds.bounds.evaluate import evaluate_all
from clbounds.experiments import catalog
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.pipeline.bounds_step import evaluate_bounds
from clbounds.experiments.training.loop import train

from conftest import tiny_raw

#: Enough test inputs and views that a sampled side is resolved where it is decided at all.
MEASURE = {"n_samples": 128, "batch_size": 32, "views": 4, "sigma_per_class": 8, "center_views": 1, "hessian_iters": 2, "trace_samples": 1,
           "sharpness_steps": 1, "sharpness_batches": 2, "attack_steps": 2, "pac_bayes_units": 4}

NOISE_DATA = '''
import torch
from clbounds.experiments.data.base import DatasetSpec, ImageDataset


def _split(n, g):
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8), torch.randint(0, 4, (n,), generator=g)


def _load(*, seed, n_train, n_test, **_):
    g = torch.Generator().manual_seed(seed + 1)
    return ImageDataset("noise", *_split(n_train, g), *_split(n_test, g), num_classes=4)


SPEC = DatasetSpec("noise", side=16, channel_stats=((0.5, 0.5, 0.5), (0.29, 0.29, 0.29)), load=_load)
'''


def _raw(**over):
    raw = tiny_raw(data__n_train=256, data__n_test=128, optim__epochs=4, **over)
    raw["measure"] = dict(MEASURE)
    return raw


def _assert_no_informative_and_no_noise_violation(checks, what):
    verdicts = {c.theorem: verdict(c) for c in checks}
    informative = [t for t, v in verdicts.items() if v == "informative"]
    assert not informative, f"{what}: {informative} are informative: " + "; ".join(
        f"{c.theorem} controls {c.details.get('controls')}" for c in checks if c.theorem in informative)
    for c in checks:
        if verdicts[c.theorem] == "violated":
            margin = c.details["margin"]
            assert abs(margin["difference"]) > margin["margin"], f"{what}: {c.theorem} violated inside its margin"
    return verdicts


def test_an_untrained_encoder_gets_no_informative_check(store):
    record = train(config_from_dict(_raw(optim__lr=1e-9)), store, progress=False)
    measure(record, store)
    verdicts = _assert_no_informative_and_no_noise_violation(evaluate_bounds(record, store), "untrained")
    assert verdicts["arora2019.one_negative_practical"] != "informative"


def test_a_structureless_encoder_gets_no_informative_check(tmp_path, monkeypatch, store):
    (tmp_path / "noise_data.py").write_text(textwrap.dedent(NOISE_DATA))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(catalog.DATASETS, "noise", "noise_data:SPEC")
    record = train(config_from_dict(_raw(data__name="noise")), store, progress=False)
    measure(record, store)
    _assert_no_informative_and_no_noise_violation(evaluate_bounds(record, store), "structureless")


class _Collapsed(nn.Module):
    """h = 10 + 0.01·h_trained: every input near one point (the audit's near-collapsed encoder)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 + 0.01 * self.encoder(x)


def test_a_collapsed_encoder_gets_no_informative_check(store):
    import clbounds
    from clbounds.experiments.training.runs import open_run

    record = train(config_from_dict(_raw()), store, progress=False)
    run = open_run(record)
    data = run.data
    collapsed = _Collapsed(run.encoder)
    rows = clbounds.measure(collapsed, data, projector=run.encoder.projector, method="simclr", augment="ae", **MEASURE)
    _assert_no_informative_and_no_noise_violation(evaluate_all(rows.terms), "collapsed")
