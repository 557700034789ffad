"""The environment variables clbounds reads, each checked here and nowhere else.

The environment is input that no one typed in this session (a job script, a scheduler,
torchrun), so it crosses the same trust boundary as a config file: every variable is read
through one function below, which checks its type and range and raises a
:class:`~clbounds.experiments.config.ConfigError` (exit 2, one line naming the variable)
instead of an ``int()`` traceback deep inside training. :func:`check_environment` runs them
all when a command starts, so a bad variable fails before anything is opened or written.

========================== ===================================================================
variable                   read as
========================== ===================================================================
``CLBOUNDS_HOME``          the default store folder (``runs`` when unset or empty)
``CLBOUNDS_SPOOL``         ``1`` inside a cluster job (rows go to spool files), else ``0``/unset
``CLBOUNDS_SPOOL_SNAPSHOT`` the driver's copy of the database a cluster job starts from
``WORLD_SIZE``             torchrun's process count, 1 to :data:`MAX_WORLD_SIZE`
``RANK``                   this process's rank, 0 to ``WORLD_SIZE`` − 1
``LOCAL_RANK``             this process's GPU on its node, 0 to ``WORLD_SIZE`` − 1
========================== ===================================================================
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .config import ConfigError

__all__ = ["MAX_PATH_CHARS", "SNAPSHOT_ENV", "SPOOL_ENV", "MAX_WORLD_SIZE", "check_environment", "local_rank", "rank", "snapshot_path", "spool_mode", "store_home", "world_size"]

SPOOL_ENV = "CLBOUNDS_SPOOL"  # "1" in a job's environment: write files, not the shared database
SNAPSHOT_ENV = "CLBOUNDS_SPOOL_SNAPSHOT"  # the driver's copy of the database that a job starts from

#: The most processes one torchrun training may have: far above any machine this tool targets,
#: and it keeps a typo (WORLD_SIZE=100000000) from reaching the process group.
MAX_WORLD_SIZE = 4096
#: The longest path taken from the environment (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096


def _text(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PATH_CHARS or "\x00" in value or "\n" in value:
        raise ConfigError(f"environment variable {name} is not a usable value ({len(value)} characters{', with a newline' if chr(10) in value else ''})")
    return value


def _integer(name: str, default: int, low: int, high: int) -> int:
    value = _text(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"environment variable {name}={value[:40]!r} is not an integer") from None
    if not low <= number <= high:
        raise ConfigError(f"environment variable {name}={number} is outside [{low}, {high}]")
    return number


def store_home() -> Path:
    """``CLBOUNDS_HOME``: the store used when ``--store`` is not given (``runs`` by default)."""
    return Path(_text("CLBOUNDS_HOME") or "runs")


def spool_mode() -> bool:
    """``CLBOUNDS_SPOOL``: True inside a cluster job, whose store writes go to spool files."""
    value = _text(SPOOL_ENV)
    if value not in (None, "0", "1"):
        raise ConfigError(f"environment variable CLBOUNDS_SPOOL={value[:40]!r} must be 1 (inside a cluster job) or 0")
    return value == "1"


def snapshot_path() -> Path | None:
    """``CLBOUNDS_SPOOL_SNAPSHOT``: the driver's database copy, only when it is a regular file
    (not a FIFO, a device or a symbolic link); None when unset or absent (the job then reads
    the shared database)."""
    value = _text(SNAPSHOT_ENV)
    if value is None:
        return None
    try:
        mode = os.lstat(value).st_mode
    except OSError:
        return None  # removed meanwhile: the job starts from the shared database
    if not stat.S_ISREG(mode):
        raise ConfigError(f"environment variable CLBOUNDS_SPOOL_SNAPSHOT={value[:80]!r} is not a regular file")
    return Path(value)


def world_size() -> int:
    """``WORLD_SIZE``: the number of processes torchrun started (1 without torchrun)."""
    return _integer("WORLD_SIZE", 1, 1, MAX_WORLD_SIZE)


def rank() -> int:
    """``RANK``: this process's rank among :func:`world_size` (0 without torchrun)."""
    return _integer("RANK", 0, 0, world_size() - 1)


def local_rank() -> int:
    """``LOCAL_RANK``: the GPU index of this process on its node (0 without torchrun)."""
    return _integer("LOCAL_RANK", 0, 0, world_size() - 1)


def check_environment() -> None:
    """Reads every variable above once, so a bad one is a usage error before a command starts."""
    store_home()
    spool_mode()
    snapshot_path()
    rank()
    local_rank()
