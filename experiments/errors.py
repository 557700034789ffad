"""The error types the CLI maps to exit codes, in a module that imports nothing heavy, so that
`clbounds --help` and `clbounds runs` start without torch."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupted, refused, or from another architecture."""
