"""Bring your own encoder: `clbounds import` for every format and `clbounds.measure` on any nn.Module.

Each test writes a checkpoint in a library's own layout (from its source: torchvision,
timm, solo-learn, lightly), imports it, and compares the imported encoder's features with an
independent reference: a functional ResNet-18 forward over the raw tensors (F.conv2d,
F.batch_norm), written here without any clbounds module.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import clbounds
from clbounds.experiments.cli import main
from clbounds.experiments.training.runs import load_encoder
from clbounds.experiments.models.external import NORM_PRESETS, TorchvisionResNet
from clbounds.experiments.measurement.probes import extract_features
from clbounds.experiments.store.db import Store

SMALL = ["data.image_size=16", "data.n_train=60", "data.n_test=40", "data.num_classes=4", "eval.knn_k=5", "eval.linear_steps=10",
         "measure.n_samples=24", "measure.views=2", "measure.center_views=1", "measure.sigma_per_class=3", "measure.batch_size=8"]


def _weights(cifar: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ResNet-18 weights in torchvision's names (fc included), BN statistics non-trivial."""
    g = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in TorchvisionResNet("resnet18", cifar_stem=cifar).state_dict().items()}
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("running_mean") or k.endswith("bn1.bias") or ".bias" in k:
            sd[k] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN weight
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            sd[k] = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512, generator=g) * 0.01, torch.zeros(1000)
    return sd


def _bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], training=False, eps=1e-5)


def reference_features(sd: dict, x: torch.Tensor, mean, std, cifar: bool, padding: int = 1, stem_relu: bool = True) -> torch.Tensor:
    """torchvision's ResNet-18 forward, written out over the raw tensors."""
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if cifar:
        x = _bn(F.conv2d(x, sd["conv1.weight"], stride=1, padding=padding), sd, "bn1")
    else:
        x = _bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1")
    x = F.relu(x) if stem_relu else x
    if not cifar:
        x = F.max_pool2d(x, 3, 2, 1)
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            out = F.relu(_bn(F.conv2d(x, sd[p + ".conv1.weight"], stride=stride, padding=1), sd, p + ".bn1"))
            out = _bn(F.conv2d(out, sd[p + ".conv2.weight"], padding=1), sd, p + ".bn2")
            short = _bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), sd, p + ".downsample.1") if p + ".downsample.0.weight" in sd else x
            x = F.relu(out + short)
    return x.mean(dim=(2, 3))


def _lightly_sequential(sd: dict) -> dict:
    """lightly's CIFAR-10 benchmark names: Sequential(*children of its ResNet), 'shortcut' branches."""
    index = {"conv1": "0", "bn1": "1", "layer1": "2", "layer2": "3", "layer3": "4", "layer4": "5"}
    out = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        if head in index:
            out[f"backbone.{index[head]}.{rest}".replace(".downsample.", ".shortcut.")] = v
    return out


def _projector(prefix: str, layout: list[tuple], seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, kind, *shape in layout:
        if kind == "linear":
            sd[f"{prefix}{i}.weight"] = torch.randn(shape[1], shape[0], generator=g) * 0.05
            if shape[2]:
                sd[f"{prefix}{i}.bias"] = torch.randn(shape[1], generator=g) * 0.01
        else:
            n = shape[0]
            sd |= {f"{prefix}{i}.weight": 1 + 0.1 * torch.randn(n, generator=g), f"{prefix}{i}.bias": 0.1 * torch.randn(n, generator=g),
                   f"{prefix}{i}.running_mean": 0.1 * torch.randn(n, generator=g), f"{prefix}{i}.running_var": 0.5 + torch.rand(n, generator=g),
                   f"{prefix}{i}.num_batches_tracked": torch.tensor(3)}
    return sd


def write_checkpoint(tmp_path: Path, fmt: str) -> tuple[Path, dict, dict]:
    """A file in the library's layout, the backbone's torchvision-named weights, and how to run the reference."""
    lightning = {"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.1.2", "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}
    if fmt == "torchvision":
        sd = _weights(cifar=False)
        path = tmp_path / "rn18.pth"
        torch.save(sd, path)
        return path, sd, {"cifar": False, "norm": "imagenet"}
    if fmt == "timm":  # a timm training checkpoint: args is an argparse.Namespace
        sd = _weights(cifar=False, seed=2)
        path = tmp_path / "checkpoint.pth.tar"
        torch.save({"epoch": 3, "arch": "resnet18", "args": argparse.Namespace(lr=0.1, model="resnet18"), "state_dict": sd, "version": 2}, path)
        return path, sd, {"cifar": False, "norm": "imagenet"}
    if fmt == "solo-learn":  # SimCLR on CIFAR: 3x3 conv1 with padding 2, projector Linear-ReLU-Linear
        sd = {k: v for k, v in _weights(cifar=True, seed=3).items() if not k.startswith("fc.")}
        state = {f"backbone.{k}": v for k, v in sd.items()} | _projector("projector.", [(0, "linear", 512, 64, True), (2, "linear", 64, 32, True)])
        state |= {"classifier.weight": torch.zeros(10, 512), "classifier.bias": torch.zeros(10)}
        path = tmp_path / "simclr-cifar10-ep=9.ckpt"
        torch.save(lightning | {"state_dict": state}, path)
        return path, sd, {"cifar": True, "padding": 2, "norm": "cifar10"}
    if fmt == "lightly":  # the CIFAR-10 benchmark: lightly's ResNet as a Sequential, SimCLRProjectionHead(512, 64, 32)
        sd = {k: v for k, v in _weights(cifar=True, seed=4).items() if not k.startswith("fc.")}
        head = _projector("projection_head.layers.", [(0, "linear", 512, 64, False), (1, "bn", 64), (3, "linear", 64, 32, False), (4, "bn", 32)])
        path = tmp_path / "epoch=9-step=90.ckpt"
        torch.save(lightning | {"state_dict": _lightly_sequential(sd) | head}, path)
        return path, sd, {"cifar": True, "stem_relu": False, "norm": "imagenet"}
    raise ValueError(fmt)


def _import(store: Path, path: Path, fmt: str, *extra: str) -> int:
    return main(["--store", str(store), "import", str(path), "--format", fmt, "--arch", "resnet18", *extra, *SMALL])


@pytest.mark.parametrize("fmt", ["torchvision", "timm", "solo-learn", "lightly"])
def test_import_each_format_then_eval_measure_bounds(tmp_path, fmt, capsys):
    path, sd, how = write_checkpoint(tmp_path, fmt)
    assert _import(tmp_path / "s", path, fmt) == 0
    store = Store(tmp_path / "s")
    (record,) = store.runs()
    assert record.method == "external" and record.status == "done" and record.config["encoder"]["external"]["sha256"]
    out = capsys.readouterr().out
    assert f"run {record.id}" in out and ("not used" in out) == (fmt in ("torchvision", "timm", "solo-learn"))

    # the features equal those of the same weights run directly, normalisation inside
    model = load_encoder(record, (3, 16, 16)).eval()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mean, std = NORM_PRESETS[how["norm"]]
    expected = reference_features(sd, x, mean, std, how["cifar"], how.get("padding", 1), how.get("stem_relu", True))
    assert torch.allclose(extract_features(model, x), expected, atol=1e-4, rtol=1e-4)
    if fmt in ("solo-learn", "lightly"):
        assert record.config["encoder"]["external"]["projector"] == {"solo-learn": "L512-64,R,L64-32", "lightly": "l512-64,B64,R,l64-32,B32"}[fmt]

    assert main(["--store", str(tmp_path / "s"), "eval", record.id]) == 0
    assert main(["--store", str(tmp_path / "s"), "measure", record.id, "--terms", "geometry", "losses"]) == 0
    assert main(["--store", str(tmp_path / "s"), "bounds", record.id]) == 0
    names = {r["name"] for r in store.measurements(record.id)}
    assert {"knn_accuracy", "center_max_inner", "info_nce", "random_init/center_max_inner"} <= names
    assert any(c["theorem"] == "huang2023.theorem2" and c["holds"] is not None for c in store.bound_checks(record.id))
    if fmt == "torchvision":  # an import has no training to repeat: the training-sample certificate says so in one line
        capsys.readouterr()
        assert main(["--store", str(tmp_path / "s"), "certify", record.id, "--train-sample"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "imported encoder" in err
    if fmt == "torchvision":  # and the report, as for any run
        assert main(["--store", str(tmp_path / "s"), "report", record.id]) == 0
        text = (tmp_path / "s" / "report" / "report.md").read_text()
        assert "huang2023.theorem2" in text and f"clbounds --store {tmp_path / 's'} report {record.id}" in text  # it regenerates from anywhere


def test_format_defaults_and_overrides_of_the_normalisation(tmp_path):
    path, _, _ = write_checkpoint(tmp_path, "torchvision")
    assert _import(tmp_path / "a", path, "torchvision") == 0
    assert Store(tmp_path / "a").runs()[0].config["encoder"]["external"]["mean"] == "0.485,0.456,0.406"
    assert _import(tmp_path / "b", path, "torchvision", "--norm", "cifar10") == 0
    assert Store(tmp_path / "b").runs()[0].config["encoder"]["external"]["std"] == "0.247,0.2435,0.2616"
    assert _import(tmp_path / "c", path, "torchvision", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25") == 0
    assert Store(tmp_path / "c").runs()[0].config["encoder"]["external"]["mean"] == "0.5,0.5,0.5"


def test_import_with_nothing_else_uses_the_format_default(tmp_path):
    path, _, _ = write_checkpoint(tmp_path, "torchvision")
    assert main(["--store", str(tmp_path / "s"), "import", str(path), "--format", "torchvision", "--arch", "resnet18"]) == 0
    cfg = Store(tmp_path / "s").runs()[0].config
    assert cfg["data"] == {**cfg["data"], "name": "synthetic", "image_size": 32} and cfg["encoder"]["external"]["mean"] == "0.485,0.456,0.406"


def test_bad_imports_fail_with_one_line_and_register_nothing(tmp_path, capsys):
    path, _, _ = write_checkpoint(tmp_path, "torchvision")
    # the wrong architecture: one line naming the missing and unexpected keys
    assert _import(tmp_path / "s", path, "torchvision") == 0 and main(["--store", str(tmp_path / "t"), "import", str(path), "--format", "torchvision", "--arch", "resnet50"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err and "unexpected" in err and "nothing was registered" in err
    assert Store(tmp_path / "t").runs() == []
    # the wrong layout: a torchvision file read as solo-learn has no backbone. prefix
    assert main(["--store", str(tmp_path / "t"), "import", str(path), "--format", "solo-learn", "--arch", "resnet18"]) == 1
    assert "backbone." in capsys.readouterr().err
    # usage errors exit 2
    assert main(["--store", str(tmp_path / "t"), "import", str(path), "--format", "torchvision", "--arch", "resnet18", "--mean", "1,2"]) == 2
    assert main(["--store", str(tmp_path / "t"), "import", str(path), "--format", "torchvision", "--arch", "resnet18", "--mean", "0,0,0", "--std", "1,1,1", "--norm", "imagenet"]) == 2
    assert main(["--store", str(tmp_path / "t"), "import", str(path), "--format", "torchvision", "--arch", "resnet18", "encoder.width=2"]) == 2
    assert main(["--store", str(tmp_path / "t"), "import", str(tmp_path / "missing.pt"), "--format", "torchvision", "--arch", "resnet18"]) == 1
    assert Store(tmp_path / "t").runs() == []


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_MARKER}",))


_MARKER = ""


def test_a_crafted_pickle_is_refused_and_never_run(tmp_path, capsys):
    global _MARKER
    _MARKER = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": {"conv1.weight": _RunsCode()}}, protocol=2))
    assert main(["--store", str(tmp_path / "s"), "import", str(path), "--format", "torchvision", "--arch", "resnet18"]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "nothing in it was run" in err and not Path(_MARKER).exists()
    torch.save({"conv1.weight": torch.zeros(1), "hook": _RunsCode()}, tmp_path / "evil2.pt")
    assert main(["--store", str(tmp_path / "s"), "import", str(tmp_path / "evil2.pt"), "--format", "torchvision", "--arch", "resnet18"]) == 1
    assert not Path(_MARKER).exists()


def test_other_layouts_lightly_examples_and_legacy_torchvision_files(tmp_path):
    """lightly's examples: Sequential(*children of a torchvision ResNet)[:-1] (indices 0, 1, 4-7;
    relu and maxpool at 2, 3); torchvision's V1 hub files: no num_batches_tracked."""
    sd = _weights(cifar=False, seed=6)
    index = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    state = {f"backbone.{index[k.partition('.')[0]]}.{k.partition('.')[2]}": v for k, v in sd.items() if k.partition(".")[0] in index}
    torch.save({"state_dict": state}, tmp_path / "lightly-example.ckpt")
    assert _import(tmp_path / "a", tmp_path / "lightly-example.ckpt", "lightly") == 0
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = load_encoder(Store(tmp_path / "a").runs()[0], (3, 16, 16)).eval()
    mean, std = NORM_PRESETS["imagenet"]
    assert torch.allclose(extract_features(model, x), reference_features(sd, x, mean, std, cifar=False), atol=1e-4, rtol=1e-4)

    legacy = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(legacy, tmp_path / "resnet18-legacy.pth")
    assert _import(tmp_path / "b", tmp_path / "resnet18-legacy.pth", "torchvision") == 0


def test_safetensors_checkpoints_import(tmp_path):
    sd = _weights(cifar=False, seed=5)
    save_file(sd, str(tmp_path / "model.safetensors"))
    assert _import(tmp_path / "s", tmp_path / "model.safetensors", "timm") == 0


def test_import_help_names_every_format(capsys):
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    text = capsys.readouterr().out
    assert all(f in text for f in ("torchvision", "solo-learn", "lightly", "timm"))


# ───────────────────────────── the Python API on any nn.Module ─────────────────────────────


class HandWrittenResNet(nn.Module):
    """Not a clbounds class: the reference forward above, as a module with its own normalisation."""

    def __init__(self, sd: dict, mean, std) -> None:
        super().__init__()
        self.sd, self.mean, self.std = sd, mean, std
        self.dummy = nn.Parameter(torch.zeros(()))  # a parameter, so the API can find the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reference_features(self.sd, x, self.mean, self.std, cifar=False) + 0 * self.dummy


def test_python_api_on_a_hand_written_model_matches_the_cli_path(tmp_path):
    path, sd, _ = write_checkpoint(tmp_path, "torchvision")
    assert _import(tmp_path / "s", path, "torchvision") == 0
    store = Store(tmp_path / "s")
    (record,) = store.runs()
    assert main(["--store", str(tmp_path / "s"), "measure", record.id, "--terms", "geometry"]) == 0
    cli = {r["name"]: r["value"] for r in store.measurements(record.id)}

    mean, std = NORM_PRESETS["imagenet"]
    settings = {k.split(".", 1)[1]: float(v) if "." in v else int(v) for k, v in (o.split("=") for o in SMALL if o.startswith("measure."))}
    rows = clbounds.measure(HandWrittenResNet(sd, mean, std), "synthetic", terms=["geometry"], data_options={"image_size": 16, "n_train": 60, "n_test": 40, "num_classes": 4},
                            store=tmp_path / "api", run="hand-written", **settings)
    api = rows.terms
    for name in ("center_max_inner", "alignment", "uniformity", "delta_mu", "intra_class_spread", "center_max_inner_projection"):
        assert api[name] == pytest.approx(cli[name], rel=1e-4, abs=1e-6), name
    for name in ("misalignment_rate", "nearest_center_error"):
        assert api[name] == cli[name]
    assert rows.skipped == {} and rows.run and any(n.startswith("random_init/") for n in api)
    # the rows went into the store, and the bounds evaluate on them
    assert {r["name"] for r in Store(tmp_path / "api").measurements(rows.run)} == set(api)
    checks = clbounds.bounds.evaluate_all(api)
    assert any(c.theorem == "huang2023.theorem2" and c.holds is not None for c in checks)


def test_python_api_without_a_loss_skips_what_needs_it_and_says_why():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 16))
    data = (torch.rand(40, 3, 16, 16), torch.arange(40) % 4, torch.rand(20, 3, 16, 16), torch.arange(20) % 4)
    rows = clbounds.measure(net, data, terms=["sharpness", "losses"], n_samples=16, views=2, batch_size=8, controls=False)
    assert "sharpness" in rows.skipped and "loss_fn or method" in rows.skipped["sharpness"] and "info_nce" in rows.terms
    with_loss = clbounds.measure(net, data, terms=["sharpness"], method="simclr", n_samples=16, views=2, batch_size=8, hessian_iters=2, trace_samples=1, controls=False)
    assert "sharpness" in with_loss.terms and with_loss.skipped == {}
    custom = clbounds.measure(net, data, terms=["sharpness"], loss_fn=lambda m, b: (m(b[0]) - m(b[1])).pow(2).mean(), n_samples=16, views=2, batch_size=8,
                              hessian_iters=2, trace_samples=1, controls=False)
    assert any("the given loss_fn loss" in p for _, _, p in custom)
    probes = clbounds.evaluate(net, data, knn_k=5, linear_steps=10)
    assert 0 <= probes.terms["knn_accuracy"] <= 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clbounds.measure(net, (data[0] * 3, *data[1:]), terms=["losses"])
    with pytest.raises(ValueError, match="unknown term group"):
        clbounds.measure(net, data, terms=["nope"])


@pytest.mark.parametrize("arch,cifar", [("resnet18", True), ("resnet18", False), ("resnet50", False)])
def test_lipschitz_upper_bounds_the_importers_resnets_and_their_blocks_decompose(arch, cifar):
    """Huang et al.'s Theorem 1 on an imported ResNet needs L: the torchvision-layout ResNet
    declares its forward as a composition and each block its residual parts; the product bound
    lies above every finite-difference ratio, and the decompositions equal the forwards."""
    from clbounds.experiments.models.external import TorchvisionResNet
    from clbounds.theory.geometry import lipschitz_lower, lipschitz_upper

    torch.manual_seed(0)
    net = TorchvisionResNet(arch, cifar_stem=cifar)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.train()(torch.rand(16, 3, 16, 16))
    net.eval()
    x = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net.sequential_parts()(x), net(x), atol=1e-5)
        for block in (m for m in net.modules() if callable(getattr(m, "residual_parts", None))):
            h = torch.rand(2, block.conv1.in_channels, 8, 8)
            branch, shortcut, post = block.residual_parts()
            assert torch.allclose(post(branch(h) + shortcut(h)), block(h), atol=1e-5)
    upper = float(lipschitz_upper(net, (3, 16, 16), certified=True))
    lower = float(lipschitz_lower(net, x, x + 1e-3 * torch.randn_like(x)))
    assert math.isfinite(upper) and 0 < lower <= upper


def test_measure_gives_an_imported_resnet_its_certified_lipschitz_bound():
    import clbounds
    from clbounds.experiments.models.external import TorchvisionResNet

    net = TorchvisionResNet("resnet18", cifar_stem=False)
    rows = clbounds.measure(net, "synthetic", terms=["lipschitz"], data_options={"image_size": 16, "n_train": 40, "n_test": 20, "num_classes": 4},
                            n_samples=8, views=2, controls=False)
    assert rows.skipped == {} and rows.terms["lipschitz_upper"] >= rows.terms["lipschitz_lower"] > 0


def test_theta_0_is_never_invented_for_a_foreign_encoder():
    """Without the weights training started from, weight_movement is a stored gap with its
    reason (the seeded re-initialisation is a control, not θ₀); with init_model it is measured."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 16))
    data = (torch.rand(40, 3, 16, 16), torch.arange(40) % 4, torch.rand(20, 3, 16, 16), torch.arange(20) % 4)
    options = {"terms": ["optimization"], "method": "simclr", "n_samples": 16, "views": 2, "batch_size": 8, "controls": False}
    rows = clbounds.measure(net, data, **options)
    assert "weight_movement" not in rows.terms and "started from are unknown" in rows.skipped["optimization/weight_movement"]
    init = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 16))
    known = clbounds.measure(net, data, init_model=init, **options)
    assert known.terms["weight_movement"] > 0 and known.skipped == {}


def test_import_with_init_gives_theta_0_and_without_it_the_terms_say_it_is_unknown(tmp_path, capsys):
    """`import --init FILE` stores the weights training started from: weight_movement is then
    measured against them (and the random-init control is that network); without --init it is
    a stored gap with its reason. A mismatched --init is refused and registers nothing."""
    path, _, _ = write_checkpoint(tmp_path, "torchvision")
    init = tmp_path / "rn18-init.pth"
    torch.save(_weights(cifar=False, seed=7), init)
    store_root = tmp_path / "s"
    assert _import(store_root, path, "torchvision", "--loss", "simclr") == 0
    assert "initial weights (theta_0): unknown" in capsys.readouterr().out
    store = Store(store_root)
    (record,) = store.runs()
    assert main(["--store", str(store_root), "measure", record.id, "--terms", "optimization", "measure.controls=false"]) == 0
    names = {r["name"] for r in store.measurements(record.id)}
    assert "weight_movement_unavailable" in names and "weight_movement" not in names

    assert _import(store_root, path, "torchvision", "--loss", "simclr", "--init", str(init)) == 0
    assert f"initial weights (theta_0): {init}" in capsys.readouterr().out
    initial = load_encoder(store.get_run(record.id), (3, 16, 16), random_init=True)
    assert torch.equal(initial.state_dict()["backbone.conv1.weight"], _weights(cifar=False, seed=7)["conv1.weight"])
    assert main(["--store", str(store_root), "measure", record.id, "--terms", "optimization", "measure.controls=false", "--force"]) == 0
    movement = [r for r in store.measurements(record.id) if r["name"] == "weight_movement"]
    assert movement and movement[-1]["value"] > 0

    cifar_init = tmp_path / "cifar-init.pth"
    torch.save(_weights(cifar=True, seed=8), cifar_init)
    assert _import(tmp_path / "t", path, "torchvision", "--loss", "simclr", "--init", str(cifar_init)) == 1
    assert "stem is not the trained checkpoint's" in capsys.readouterr().err and Store(tmp_path / "t").runs() == []


@pytest.mark.slow
def test_an_imported_resnet18_with_init_gets_theorem_1_in_both_spaces_and_the_checks_that_need_theta_0(tmp_path):
    path, _, _ = write_checkpoint(tmp_path, "solo-learn")  # a ResNet-18 with a projection head
    init = tmp_path / "init.ckpt"
    state = {f"backbone.{k}": v for k, v in _weights(cifar=True, seed=9).items() if not k.startswith("fc.")}
    state |= _projector("projector.", [(0, "linear", 512, 64, True), (2, "linear", 64, 32, True)], seed=5)
    torch.save({"state_dict": state}, init)
    store_root = tmp_path / "s"
    tiny = ["measure.n_samples=16", "measure.views=2", "measure.center_views=1", "measure.sigma_per_class=2", "measure.batch_size=8",
            "measure.sharpness_steps=1", "measure.pac_bayes_units=2", "measure.controls=false"]
    assert main(["--store", str(store_root), "import", str(path), "--format", "solo-learn", "--arch", "resnet18", "--loss", "simclr",
                 "--init", str(init), *SMALL, *tiny]) == 0
    store = Store(store_root)
    (record,) = store.runs()
    assert main(["--store", str(store_root), "measure", record.id, "--terms", "geometry", "sigma", "lipschitz", "optimization", "bounds"]) == 0
    assert main(["--store", str(store_root), "bounds", record.id]) == 0
    checks = {c["theorem"]: c for c in store.bound_checks(record.id)}
    for theorem in ("huang2023.theorem1", "huang2023.theorem1[projection]", "ssa_clr.pac_bayes"):
        assert checks[theorem]["bound"] is not None and not checks[theorem]["details"].get("missing_terms"), theorem
    names = {m["name"] for m in store.measurements(record.id)}
    assert {"lipschitz_upper", "weight_movement"} <= names and not any(n.endswith("_unavailable") for n in names)
