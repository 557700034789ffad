"""What a config can name, and where each is implemented: torch-free, so that the config
validates a name without importing what it names.

``DATASETS`` is the registry of datasets: a name and the ``module:ATTR`` of its
``experiments.data.DatasetSpec``. ``METHODS`` is the registry of training methods: a name and the module that defines its
``METHOD`` (an ``experiments.training.methods.Method``), imported on first use. Adding a method
is one module and one line here; everything else reads the method's declaration
(``experiments/training/methods/__init__.py`` lists what one declares).
"""

from __future__ import annotations

_METHODS_PACKAGE = "clbounds.experiments.training.methods"

#: Training methods by name -> the module that defines ``METHOD``.
METHODS: dict[str, str] = {
    "simclr": f"{_METHODS_PACKAGE}.simclr",
    "barlow_twins": f"{_METHODS_PACKAGE}.barlow_twins",
    "ssa_clr": f"{_METHODS_PACKAGE}.ssa_clr",
    "cacr": f"{_METHODS_PACKAGE}.cacr",
    "robust_cl": f"{_METHODS_PACKAGE}.robust_cl",
    "rocl": f"{_METHODS_PACKAGE}.rocl",
    "two_network": f"{_METHODS_PACKAGE}.two_network",
}

#: ``method.name`` of an encoder trained elsewhere (``clbounds import`` or the Python API).
EXTERNAL = "external"


#: The methods whose training loss a foreign encoder may name (``encoder.external.loss``), so
#: that measure can differentiate it.
FOREIGN_LOSSES = ("simclr", "barlow_twins")


def foreign_losses() -> tuple[str, ...]:
    """Every valid ``encoder.external.loss``: none (``""``) or a method of :data:`FOREIGN_LOSSES`."""
    return ("", *FOREIGN_LOSSES)


_DATA_PACKAGE = "clbounds.experiments.data"

#: Datasets by name -> ``module:ATTR`` of its ``experiments.data.DatasetSpec``.
DATASETS: dict[str, str] = {
    "synthetic": f"{_DATA_PACKAGE}.synthetic:SPEC",
    "digits": f"{_DATA_PACKAGE}.digits:SPEC",
    "cifar10": f"{_DATA_PACKAGE}.cifar:CIFAR10",
    "cifar100": f"{_DATA_PACKAGE}.cifar:CIFAR100",
    "stl10": f"{_DATA_PACKAGE}.stl:STL10",
    "npz": f"{_DATA_PACKAGE}.user:NPZ",  # your arrays: data.root is the .npz file
    "folder": f"{_DATA_PACKAGE}.user:FOLDER",  # your images: data.root holds one sub-folder per class
}


def dataset_names() -> tuple[str, ...]:
    """Every valid ``data.name``."""
    return tuple(DATASETS)


def method_names() -> tuple[str, ...]:
    """Every valid ``method.name``: the registered methods, then ``external``."""
    return (*METHODS, EXTERNAL)
