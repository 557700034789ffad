"""The run store: ``db`` (the SQLite database of runs, measurements and bound checks; every
write one operation built into SQL in one place), ``spool`` (the same operations as files,
for cluster jobs, and their idempotent import), ``locks`` (one trainer per run).

May import: ``config``, ``errors``. Imports no torch.
"""
