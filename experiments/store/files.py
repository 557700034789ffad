"""Reading a file from a store: only regular files, never past a size limit.

A store folder may hold what a hostile or careless user put there: a FIFO (which blocks every
command that opens it), a symlink to /dev/zero (which never ends) or to a file outside the
store. :func:`read_regular_file` refuses all of them before reading a byte.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_regular_file(path: str | Path, limit: int) -> str:
    """The UTF-8 text of ``path`` if it is a regular file (not a symlink, FIFO or device) of at
    most ``limit`` bytes; a ValueError says why not (an OSError when it cannot be opened)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path} has {info.st_size} bytes, above the limit of {limit}")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} grew above the limit of {limit} bytes while read")
    return data.decode("utf-8")
