"""The command line's data option (``--data``, ``--probe-data``): a dataset's name, or the
user's own data with its path, ``npz:FILE`` or ``folder:PATH``, as the config keys it stands for."""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError

__all__ = ["PATH_DATASETS", "data_overrides", "data_section"]

#: Datasets named with their path on the command line: ``npz:FILE`` and ``folder:PATH``.
PATH_DATASETS = ("npz", "folder")


def data_section(value: str) -> dict[str, str]:
    """The ``data`` keys a ``--data`` or ``--probe-data`` value stands for: ``npz:FILE`` is
    ``{"name": "npz", "root": FILE}``, a bare name ``{"name": name}``. The root is made absolute,
    so the run's data is found from any folder later (eval, measure).

    Examples:
        >>> data_section("digits")
        {'name': 'digits'}
        >>> data_section("npz:/data/x.npz")
        {'name': 'npz', 'root': '/data/x.npz'}
    """
    name, sep, path = value.partition(":")
    if (name in PATH_DATASETS and not path) or (name not in PATH_DATASETS and sep):
        raise ConfigError(f"data {value!r}: {name} needs its path ({name}:PATH)" if name in PATH_DATASETS
                          else f"data {value!r}: only {' and '.join(PATH_DATASETS)} take a path")
    return {"name": name, **({"root": str(Path(path).expanduser().resolve())} if path else {})}


def data_overrides(value: str) -> list[str]:
    """The config overrides that ``--data`` stands for: ``npz:PATH`` is ``data.name=npz data.root=PATH``."""
    return [f"data.{key}={v}" for key, v in data_section(value).items()]
