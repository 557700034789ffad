"""Measurement of a trained encoder: ``registry`` (torch-free: the term groups' names, the
control plan, the settled estimator budgets), ``context`` (what every group reads),
``groups/`` (one module per term group), ``measure`` (groups and controls into the store),
``accuracy`` (the probes of ``clbounds eval``), ``probes``, ``adversarial_probe``,
``autoattack`` (the optional extra), ``certify`` (PAC-Bayes and test-set certificates).

May import: ``training`` (its ``runs``, ``augment``, ``optim``, ``methods``; never the loop),
``models``, ``store``, ``data``, ``config``, ``errors``; ``theory``, ``bounds``.
"""
