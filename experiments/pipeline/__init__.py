"""Grids of runs: ``grid`` (train → eval → measure per item, each step skipped when stored;
the executor protocol, local processes), ``cluster`` (SLURM and submitit-local executors),
``bounds_step`` (every theorem on a run's stored terms), ``verify`` (presets and the main
job), ``reproduce`` (one paper figure or table).

May import: every layer below; ``theory``, ``bounds``, ``figures``.
"""
