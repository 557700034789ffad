"""`clbounds import`: register an encoder trained elsewhere as a run.

    clbounds import rn18.pt --format torchvision --arch resnet18

reads the checkpoint safely (safetensors, or ``torch.load(weights_only=True)``: nothing is
unpickled but tensors and plain containers, and argparse.Namespace, the one data class timm
checkpoints carry), maps its keys onto a torchvision-layout ResNet (:mod:`.external`),
writes ``encoder.safetensors`` in the run folder and a config whose ``encoder.external``
section records the format, the source file and its sha256. ``eval``, ``measure``, ``bounds``,
``export`` and the report then work on it as on a run clbounds trained (method ``external``).

The layouts, from each library's source:

| format | file | keys |
|---|---|---|
| torchvision | a plain state dict (``.pth``/``.pt``/``.safetensors``) | ``conv1.weight``, ``layer1.0.conv1.weight``, …; ``fc.*`` dropped |
| timm | a plain state dict (hub ``pytorch_model.bin``/``model.safetensors``), or a training checkpoint with ``state_dict`` | as torchvision (resnet18/50; not the deep-stem ``-d`` variants) |
| solo-learn | Lightning ``.ckpt``: ``state_dict`` | ``backbone.*`` (torchvision names; CIFAR stem 3×3 stride 1 *padding 2*, no max-pool), ``projector.{i}.*``; ``classifier``, ``momentum_*``, ``predictor`` dropped |
| lightly | Lightning ``.ckpt``: ``state_dict`` (or a plain one) | ``backbone.conv1.weight``… (a torchvision ResNet, the ImageNet benchmarks), ``backbone.0.weight``, ``backbone.2.0.conv1.weight``… (the CIFAR-10 benchmark: an ``nn.Sequential`` of lightly's ResNet's children: no stem ReLU, ``shortcut`` for ``downsample``) or ``backbone.4.0.conv1.weight``… (an ``nn.Sequential`` of a torchvision ResNet's children, as lightly's examples build it); ``projection_head.layers.{i}.*`` |

DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) prefixes are stripped. The stem is
read from ``conv1.weight``: 7×7 is the ImageNet stem, 3×3 the CIFAR one. Normalisation: the
format's usual one (ImageNet statistics for torchvision, timm and lightly; CIFAR-10's for a
solo-learn CIFAR checkpoint), unless ``--norm`` or ``--mean/--std`` say otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .models.checkpoint import CheckpointError, _load_model_tensors, save_weights
from .config import USER_ARCH_PATTERN, Config, ConfigError, apply_overrides, config_from_dict, dump_config
from .data_option import PATH_DATASETS, data_section
from .models.external import NORM_PRESETS, RESNET_LAYERS, ExternalEncoder, is_user_arch, parse_floats, projector_spec
from .store.db import RunRecord, Store
from .training.runs import INIT_WEIGHTS  # the file the run's θ₀ is read from

FORMATS = ("torchvision", "solo-learn", "lightly", "timm")
ARCHS = tuple(RESNET_LAYERS)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """The file's contents without running any code from it: safetensors, or a torch pickle
    loaded with ``weights_only=True``. A pickle that asks for anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({err})") from None
    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; older ones load without the allowlist
    try:
        with safe([argparse.Namespace]) if safe is not None else contextlib.nullcontext():  # timm's training checkpoints keep their args
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} was refused and nothing in it was run: it holds Python objects other than tensors and plain containers "
                              f"({first}). Save its state_dict alone (torch.save(ckpt['state_dict'], 'weights.pt')) where you trust the file") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted or not a torch checkpoint ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict or a checkpoint dict")
    return obj


def _state_dict(obj: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The model's tensors: a Lightning/timm ``state_dict`` or ``model`` entry, else the dict
    itself; DDP and torch.compile prefixes stripped."""
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if torch.is_tensor(value):
            state[re.sub(r"^(module\.|_orig_mod\.)+", "", str(key)).replace("._orig_mod.", ".")] = value
    if not state:
        raise CheckpointError(f"checkpoint {path} holds no tensors (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
    check_state_limits(state, path)
    return state


#: Limits on what an untrusted checkpoint may declare, checked before anything is allocated or
#: looped over: a few MB of pickle can declare a stride-0 tensor of 4·10⁹ entries, which copying
#: into a model would allocate. A ResNet-50 has 25·10⁶ parameters in 320 tensors; a ViT-L 3·10⁸.
MAX_TENSORS = 20_000
MAX_TENSOR_ELEMENTS = 2**28
MAX_TOTAL_ELEMENTS = 2**30
MAX_KEY_LENGTH = 500


def check_state_limits(state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """Raises a CheckpointError when ``state`` exceeds the limits above (count, per-tensor and
    total entries, key length, dimensions), naming the limit; nothing is allocated."""
    if len(state) > MAX_TENSORS:
        raise CheckpointError(f"checkpoint {path} holds {len(state)} tensors, above the limit of {MAX_TENSORS}")
    total = 0
    for key, value in state.items():
        if len(key) > MAX_KEY_LENGTH:
            raise CheckpointError(f"checkpoint {path} has a key of {len(key)} characters, above the limit of {MAX_KEY_LENGTH}")
        n = value.numel()  # the declared size, whatever the storage behind it (a stride-0 view is tiny on disk)
        if n > MAX_TENSOR_ELEMENTS or value.ndim > 8:
            raise CheckpointError(f"checkpoint {path}: tensor {key[:80]!r} declares shape {tuple(value.shape)} ({n} entries), above the limit of {MAX_TENSOR_ELEMENTS} entries and 8 dimensions")
        total += n
    if total > MAX_TOTAL_ELEMENTS:
        raise CheckpointError(f"checkpoint {path} declares {total} entries in all, above the limit of {MAX_TOTAL_ELEMENTS}")


def _under(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# lightly's CIFAR-10 benchmark: Sequential(*children of lightly's ResNetGenerator) (no stem ReLU or
# max-pool among them, 'shortcut' branches); lightly's examples: Sequential(*children of a
# torchvision ResNet)[:-1] (conv1, bn1, relu, maxpool, layer1-4, avgpool).
_LIGHTLY_SEQUENTIAL = {"0": "conv1", "1": "bn1", "2": "layer1", "3": "layer2", "4": "layer3", "5": "layer4"}
_TORCHVISION_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def _lightly_backbone(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """lightly's backbone as torchvision names, and whether it has the stem ReLU."""
    backbone = _under(state, "backbone.")
    if "conv1.weight" in backbone:  # a torchvision ResNet (the ImageNet benchmarks); fc is Identity there
        return {k: v for k, v in backbone.items() if not k.startswith("fc.")}, True
    heads = {k.partition(".")[0] for k in backbone}
    torchvision_children = "7" in heads or ("2" not in heads and "4" in heads)
    names, stem_relu = (_TORCHVISION_CHILDREN, True) if torchvision_children else (_LIGHTLY_SEQUENTIAL, False)
    renamed = {}
    for key, value in backbone.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise CheckpointError(f"lightly backbone key backbone.{key} is neither a torchvision ResNet's nor lightly's ResNetGenerator's")
        renamed[f"{names[head]}.{rest}".replace(".shortcut.", ".downsample.")] = value
    return renamed, stem_relu


def split_layout(state: Mapping[str, torch.Tensor], fmt: str, resnet: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str, dict[str, Any]]:
    """(backbone tensors in torchvision names, projector tensors, projector prefix, notes) of a
    state dict. With ``resnet=False`` (the user's own network) the backbone's names are kept as
    they are: a plain state dict is all backbone, and lightly's is not renamed."""
    notes: dict[str, Any] = {}
    if not resnet and fmt in ("torchvision", "timm"):
        backbone, projector, prefix, dropped = dict(state), {}, "", []
    elif not resnet and fmt == "lightly":
        backbone, projector, prefix = _under(state, "backbone."), _under(state, "projection_head.layers."), "projection_head.layers."
        dropped = sorted(k for k in state if not k.startswith(("backbone.", "projection_head.layers.")))
    elif fmt in ("torchvision", "timm"):
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        dropped = sorted(k for k in state if k.startswith("fc."))
        projector, prefix = {}, ""
    elif fmt == "solo-learn":
        backbone, projector, prefix = _under(state, "backbone."), _under(state, "projector."), "projector."
        dropped = sorted(k for k in state if not k.startswith(("backbone.", "projector.")))
    elif fmt == "lightly":
        backbone, notes["stem_relu"] = _lightly_backbone(state)
        projector, prefix = _under(state, "projection_head.layers."), "projection_head.layers."
        dropped = sorted(k for k in state if not k.startswith(("backbone.", "projection_head.layers.")))
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if dropped:
        notes["dropped"] = dropped
    if not backbone:
        expected = {"solo-learn": "backbone.", "lightly": "backbone."}.get(fmt, "conv1., layer1., …")
        raise CheckpointError(f"no backbone tensors for format {fmt}: expected keys starting with {expected}; the file has {', '.join(list(state)[:6])}")
    return backbone, projector, prefix, notes


def _stem(backbone: Mapping[str, torch.Tensor], path: Path) -> bool:
    w = backbone.get("conv1.weight")
    if w is None or w.ndim != 4:
        raise CheckpointError(f"checkpoint {path} has no 4-D conv1.weight: missing ['conv1.weight'] for a torchvision-layout ResNet")
    return tuple(w.shape[-2:]) == (3, 3)


def default_norm(fmt: str, cifar: bool) -> str:
    """The normalisation a format's recipes train with: solo-learn's CIFAR data uses CIFAR-10's statistics."""
    return "cifar10" if fmt == "solo-learn" and cifar else "imagenet"


def build_import(path: str | Path, fmt: str, arch: str, norm: str | None = None, mean: str | None = None, std: str | None = None,
                 loss: str = "", data: str = "synthetic", image_size: int | None = 32, name: str | None = None,
                 overrides: list[str] | None = None) -> tuple[Config, ExternalEncoder, dict[str, Any]]:
    """The config and the loaded encoder of an import, without touching any store.

    ``overrides`` are ``key=value`` config overrides (data size, eval and measure settings),
    checked like those of ``clbounds train``; the ``encoder`` and ``method`` sections are the
    checkpoint's and cannot be overridden.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if arch not in ARCHS and not re.fullmatch(USER_ARCH_PATTERN, arch):
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)} or give your own as module.path:callable")
    if (mean is None) != (std is None):
        raise ConfigError("give --mean and --std together (or --norm)")
    if norm is not None and mean is not None:
        raise ConfigError("give either --norm or --mean/--std, not both")
    if mean is not None:
        try:
            parse_floats(mean, "mean"), parse_floats(std, "std")
        except ValueError as err:
            raise ConfigError(str(err)) from None
    state = _state_dict(read_checkpoint(path), path)
    user = is_user_arch(arch)
    backbone_sd, projector_sd, prefix, notes = split_layout(state, fmt, resnet=not user)
    cifar = _stem(backbone_sd, path) if not user else False  # a user's network: its own stem, loaded key by key
    if mean is None:
        norm = norm or default_norm(fmt, cifar)
        if norm not in NORM_PRESETS:
            raise ConfigError(f"unknown normalisation {norm!r}; choose one of {', '.join(NORM_PRESETS)} or give --mean/--std")
        m, s = NORM_PRESETS[norm]
        mean, std = ",".join(f"{v:g}" for v in m), ",".join(f"{v:g}" for v in s)
        notes["normalisation"] = norm
    spec = projector_spec({prefix + k: v for k, v in projector_sd.items()}, prefix) if projector_sd else ""
    external = {"format": fmt, "arch": arch, "cifar_stem": cifar, "stem_padding": 2 if (fmt == "solo-learn" and cifar) else 1,
                "stem_relu": notes.pop("stem_relu", True), "projector": spec, "mean": mean, "std": std, "loss": loss,
                "source": str(path), "sha256": sha256(path)}
    section = data_section(data)  # "npz:PATH" and "folder:PATH": the user's own data
    resizable = section["name"] in ("synthetic", "digits", *PATH_DATASETS)
    raw = {"name": name or f"import-{path.stem}",
           "data": {**section, **({"image_size": image_size} if resizable else {})},
           "encoder": {"arch": "external", "external": external}, "method": {"name": "external"}}
    fixed = [o for o in overrides or [] if o.split("=", 1)[0].split(".", 1)[0] in ("encoder", "method")]
    if fixed:
        raise ConfigError(f"override {fixed[0]!r}: the encoder and method of an import come from the checkpoint")
    cfg = config_from_dict(apply_overrides(raw, overrides or []))
    try:
        model = _build_and_load(cfg, backbone_sd, projector_sd, path)
    except ValueError as err:  # the user's module:callable cannot give a network: a usage error
        if not user:
            raise
        raise ConfigError(str(err)) from None
    if user:  # features must be [N, D]: every probe and term reads them so
        side = cfg.data.image_size or 32
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, 3, side, side))
        if out.ndim != 2:
            raise CheckpointError(f"--arch {arch}: the network maps a [2, 3, {side}, {side}] batch to shape {tuple(out.shape)}; "
                                  "it must return features [N, D] (flatten or pool inside it)")
    return cfg, model, notes


def _build_and_load(cfg: Config, backbone_sd: Mapping[str, torch.Tensor], projector_sd: Mapping[str, torch.Tensor], path: Path) -> ExternalEncoder:
    from .models.external import build_external

    model = build_external(cfg.encoder.external)
    tensors = {f"backbone.{k}": v for k, v in backbone_sd.items()} | {f"projector.{k}": v for k, v in projector_sd.items()}
    own = model.state_dict()
    tensors |= {k: v for k, v in own.items() if k.startswith("normalize.")}
    # Files saved before BatchNorm counted its batches (torchvision's V1 hub weights) have no
    # num_batches_tracked; torch's own loader accepts them, and it changes no forward pass.
    tensors |= {k: torch.zeros_like(v) for k, v in own.items() if k.endswith("num_batches_tracked") and k not in tensors and k.rsplit(".", 1)[0] + ".running_mean" in tensors}
    try:
        _load_model_tensors(model, tensors, path)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (format {cfg.encoder.external.format}, arch {cfg.encoder.external.arch}; keys as in that layout, the prefixes of "
                              "the format stripped)") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} has non-finite values in {', '.join(bad[:3])}{'…' if len(bad) > 3 else ''}")
    return model.eval()




def load_init(cfg: Config, path: str | Path) -> ExternalEncoder:
    """The encoder at the initial weights in ``path`` (θ₀ of the import ``cfg``): the same format,
    architecture, stem and projector as the trained checkpoint, checked like it."""
    path = Path(path)
    user = is_user_arch(cfg.encoder.external.arch)
    backbone_sd, projector_sd, _, _ = split_layout(_state_dict(read_checkpoint(path), path), cfg.encoder.external.format, resnet=not user)
    if not user and _stem(backbone_sd, path) != cfg.encoder.external.cifar_stem:
        raise CheckpointError(f"--init {path}: its stem is not the trained checkpoint's ({'CIFAR' if cfg.encoder.external.cifar_stem else 'ImageNet'}); "
                              "the initial weights must be of the same network")
    if bool(projector_sd) != bool(cfg.encoder.external.projector):
        raise CheckpointError(f"--init {path}: it {'has' if projector_sd else 'has no'} projector and the trained checkpoint "
                              f"{'has' if cfg.encoder.external.projector else 'has none'}; the initial weights must be of the same network")
    return _build_and_load(cfg, backbone_sd, projector_sd, path)


def import_checkpoint(path: str | Path, store: Store, fmt: str, arch: str, init: str | Path | None = None, **options: Any) -> tuple[RunRecord, dict[str, Any]]:
    """Registers the checkpoint as a run (status done) and returns its record and the notes
    (dropped keys, normalisation used). ``init``: a checkpoint of the weights its training
    started from, in the same format; without it, every term that compares with θ₀ is a
    stored gap ("the initialisation is unknown"), never a made-up one."""
    cfg, model, notes = build_import(path, fmt, arch, **options)
    initial = load_init(cfg, init) if init is not None else None  # checked before anything is written
    run_id = cfg.run_id()
    run_dir = store.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, run_dir / "encoder.safetensors", metadata={"source": str(path), "sha256": cfg.encoder.external.sha256, "format": fmt})
    if initial is not None:
        save_weights(initial, run_dir / INIT_WEIGHTS, metadata={"source": str(init), "sha256": sha256(Path(init)), "format": fmt})
        notes["init"] = str(init)
    else:  # this import says nothing about θ₀: an initialisation from an earlier import of the same file is not kept
        (run_dir / INIT_WEIGHTS).unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    store.upsert_run(run_id, cfg.to_dict(), status="done", message=f"imported from {Path(path).name} ({fmt}, {arch}, sha256 {cfg.encoder.external.sha256[:12]}…)")
    return store.get_run(run_id), notes

