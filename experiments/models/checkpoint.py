"""Checkpoints as safetensors: tensors and JSON metadata only, nothing is ever unpickled.

Two files per run:

- ``encoder.safetensors``: the model's state_dict (weights and buffers), what users load;
- ``state.safetensors``: everything resuming needs in one file, so it is always consistent:
  the model state, the optimizer state flattened into tensors, and the epoch counter and
  optimizer hyperparameters as JSON metadata.

Every write goes to a temporary file in the same folder and is renamed into place, so a
crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


from ..errors import CheckpointError  # noqa: E402 - defined without torch, re-exported here


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted or not a safetensors file ({err}); delete it to retrain") from None


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Writes the model's state_dict to ``path`` atomically."""
    _atomic_save(dict(model.state_dict()), Path(path), metadata)


def load_weights(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Loads weights into ``model``; a different architecture is a clear :class:`CheckpointError`.

    Returns the file's metadata.
    """
    tensors, metadata = _load(Path(path))
    _load_model_tensors(model, tensors, path)
    return metadata


def _load_model_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"missing {len(missing)} {missing[:3]}{'…' if len(missing) > 3 else ''}", f"unexpected {len(unexpected)} {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"]
        if shapes:
            parts.append(f"shape mismatch {shapes[:2]}")
        raise CheckpointError(f"checkpoint {path} does not match this architecture: {'; '.join(parts)}")
    check_tensors(tensors, path, {k: v.dtype for k, v in own.items()})
    model.load_state_dict(tensors)


def check_tensors(tensors: dict[str, torch.Tensor], path: str | Path, dtypes: dict[str, torch.dtype] | None = None) -> None:
    """Every floating tensor finite, and each tensor floating exactly where the model's is
    (an integer or NaN "weight" would load, and then poison every term measured from it)."""
    for name, t in tensors.items():
        want = dtypes.get(name) if dtypes else None
        if want is not None and want.is_floating_point != t.dtype.is_floating_point:
            raise CheckpointError(f"checkpoint {path}: tensor {name} is {t.dtype}, the model's is {want}; delete it to retrain")
        if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint {path}: tensor {name} has non-finite values; delete it to retrain")


def save_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | Path, info: dict[str, Any]) -> None:
    """Writes model and optimizer state (as tensors) and ``info`` (JSON metadata) atomically."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, float]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    meta = {"info": json.dumps(info), "param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    _atomic_save(tensors, Path(path), meta)


def load_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | Path) -> dict[str, Any]:
    """Restores model and optimizer from :func:`save_training_state` and returns its ``info``."""
    tensors, meta = _load(Path(path))
    try:
        param_groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta["scalars"])
        info = json.loads(meta["info"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"training state {path} has no valid metadata ({err}); delete it to retrain") from None
    _check_state_metadata(path, info, param_groups, scalars)
    check_tensors({k: v for k, v in tensors.items() if k.startswith("optim.")}, path)
    _load_model_tensors(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, entry in scalars.items():
        state.setdefault(int(idx), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"training state {path} does not match this optimizer: {err}") from None
    return info


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_state_metadata(path: str | Path, info: Any, param_groups: Any, scalars: Any) -> None:
    """The JSON of a training state, checked before anything is restored from it: a crafted or
    damaged file is a :class:`CheckpointError`, never a TypeError mid-resume or a NaN run."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"training state {path}: {what}; delete it to retrain")

    if not isinstance(info, dict) or not isinstance(info.get("epoch"), int) or isinstance(info["epoch"], bool) or info["epoch"] < 0:
        raise bad(f"epoch must be a non-negative integer, got {info.get('epoch') if isinstance(info, dict) else info!r}")
    for key in ("seconds", "loss", "views_per_s"):
        if key in info and not _finite_number(info[key]):
            raise bad(f"{key} must be a finite number, got {info[key]!r}")
    if not isinstance(param_groups, list) or not all(isinstance(g, dict) for g in param_groups):
        raise bad("param_groups must be a list of mappings")
    for g in param_groups:
        for key, value in g.items():
            if key == "params":
                if not isinstance(value, list) or not all(isinstance(i, int) for i in value):
                    raise bad("param_groups[].params must be a list of integers")
            elif key in ("lr", "base_lr", "momentum", "weight_decay", "dampening", "eps") and not _finite_number(value):
                raise bad(f"param_groups[].{key} must be a finite number, got {value!r}")
            elif isinstance(value, float) and not math.isfinite(value):
                raise bad(f"param_groups[].{key} is not finite")
    if not isinstance(scalars, dict) or not all(isinstance(v, dict) and all(x is None or isinstance(x, bool) or _finite_number(x) for x in v.values())
                                                for v in scalars.values()):
        raise bad("the optimizer's scalar state must be finite numbers")
