"""Side-by-side benchmarks of clbounds against the library a user would otherwise reach for.

Each ``bench_*`` module builds a :class:`~benchmarks.harness.Case` (ours, the peer, an
agreement check) at a given size; :mod:`benchmarks.run` times them all and writes
``results.json`` and ``results.md``. Nothing here is a timed test.
"""
