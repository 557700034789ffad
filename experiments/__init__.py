"""Every side effect of clbounds: data, encoders, training, measurement, the run store, the CLI.

Layers, lowest first; a module imports its own layer and those below, never one above
(``tests/test_layers.py`` walks every import, in functions too):

| layer | owns |
|---|---|
| ``config``, ``errors`` | the typed, validated config; error types (torch-free) |
| ``store/``, ``data/`` | the SQLite store, spool files and locks; the datasets |
| ``models/`` | encoders, foreign checkpoint layouts, checkpoint files |
| ``training/`` | a run's networks and data (``runs.open_run``), the loop, the methods, augmentation, optimisers, SAM, DDP |
| ``measurement/`` | the measure context, one module per term group, their torch-free registry, probes, certificates, AutoAttack |
| ``pipeline/`` | grid steps, executors, bound evaluation of stored terms, verify, reproduce, the training-sample certificate (it retrains) |
| ``cli``, ``commands``, ``api``, ``import_checkpoint`` | the entry points |

Studies that are scripts (the estimators' convergence study, the methods table) live in
``benchmarks/studies/``, never here.
"""
