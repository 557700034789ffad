"""Training: ``runs`` (a config made concrete: device, data, networks; ``open_run`` for a stored
run), ``loop`` (the one top-down training flow), ``methods`` (what differs between the
methods), ``augment``, ``optim``, ``sam``, ``distributed`` (torchrun/DDP), ``resources``
(memory checks before allocation).

May import: ``models``, ``store``, ``data``, ``config``, ``errors``; ``theory``. Every step
after training opens a run through ``runs``, never through ``loop``.
"""
