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
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


from .errors import CheckpointError  # noqa: E402 - defined without torch, re-exported here


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
    model.load_state_dict(tensors)


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
