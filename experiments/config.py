"""Experiment configs: YAML in, a validated, typed ``Config`` out.

Validation happens before any work starts. Every error names the key, the value and what
is allowed; an unknown key gets a did-you-mean. ``key.sub=value`` overrides from the
command line go through the same checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .catalog import dataset_names, foreign_losses, method_names

CONFIG_DIR = Path(__file__).parent / "configs"
PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """An invalid config: the message names the key, the value and what is allowed."""


#: The augmentations of Huang et al. (2023, Table 1) by letter (experiments/training/augment.py applies them).
AUGMENTATIONS = {"a": "crop", "b": "blur", "c": "grayscale", "d": "color", "e": "flip"}
SIMCLR_ORDER = "aedcb"


def parse_augment(spec: str) -> str:
    """Validates an augmentation string such as ``"abcd"`` and returns it in canonical order.

    The empty string means no augmentation (views equal the input).

    Example:
        >>> parse_augment("dcba")
        'adcb'
    """
    bad = sorted(set(spec) - set(AUGMENTATIONS))
    if bad:
        raise ValueError(f"augment {spec!r}: unknown letter(s) {', '.join(bad)}; allowed a-e ({', '.join(f'{k}={v}' for k, v in AUGMENTATIONS.items())})")
    if len(set(spec)) != len(spec):
        raise ValueError(f"augment {spec!r}: a letter is repeated")
    return "".join(c for c in SIMCLR_ORDER if c in spec)


MAX_YAML_BYTES = 1 << 20  # a config or preset is a few kB; anything this large is not one


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: a few lines of nested aliases expand
    to gigabytes (a "billion laughs"), and no config of clbounds needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"YAML aliases (*name) are not accepted (line {mark.line + 1}); write the value out")
        return super().compose_node(parent, index)  # an anchor alone is harmless: only its aliases expand


def load_yaml(text: str, source: str) -> Any:
    """Parses one YAML document of plain data (mappings, lists, scalars), or raises a
    one-line :class:`ConfigError` naming ``source``: a syntax error with its line and column,
    an unsupported tag, an alias, or a document over 1 MiB."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source} is {len(text):,} bytes; a config or preset is at most {MAX_YAML_BYTES:,}")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:  # an alias
        raise ConfigError(f"{source}: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(err.problem or err.context or "invalid").split())
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(err).split())}") from None


def _range(**bounds: float) -> dict:
    return {"range": bounds}


@dataclass
class SyntheticConfig:
    shift: int = field(default=4, metadata=_range(ge=0))
    contrast: float = field(default=0.3, metadata=_range(ge=0, lt=1))
    noise: float = field(default=0.08, metadata=_range(ge=0))
    main_fraction: float = field(default=0.9, metadata=_range(gt=0, le=1))
    outlier_scale: float = field(default=3.0, metadata=_range(ge=1))


@dataclass
class DataConfig:
    name: str = field(default="synthetic", metadata={"choices": dataset_names})  # a dataset of catalog.DATASETS
    root: str = "data"
    image_size: int | None = field(default=None, metadata=_range(ge=4, le=1024))
    num_classes: int = field(default=10, metadata=_range(ge=2, le=100_000))
    n_train: int = field(default=5000, metadata=_range(ge=2, le=100_000_000))
    n_test: int = field(default=1000, metadata=_range(ge=1, le=100_000_000))
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    imbalanced: bool = False  # class i keeps (i+1)/K of its training samples (CACR, PAPERS §4)


#: ``encoder.external.arch``: empty, a torchvision-layout ResNet, or ``package.module:callable``.
USER_ARCH_PATTERN = r"|resnet18|resnet50|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"


@dataclass
class ExternalConfig:
    """An encoder trained elsewhere (``clbounds import``, or the Python API): where it came
    from and how to rebuild it. Read only when ``encoder.arch`` is ``external``."""

    format: Literal["", "python", "torchvision", "solo-learn", "lightly", "timm"] = ""  # python: measured through the API, no checkpoint kept
    # a torchvision-layout ResNet, or the user's own network: "package.module:callable" (called with no arguments)
    arch: str = field(default="", metadata={"pattern": (USER_ARCH_PATTERN, "resnet18, resnet50 or module.path:callable")})
    cifar_stem: bool = False  # 3x3 stride-1 first conv and no max-pool (the CIFAR variant)
    stem_padding: int = field(default=1, metadata=_range(ge=0))  # padding of the CIFAR stem's conv (solo-learn uses 2)
    stem_relu: bool = True  # False: no ReLU after the stem's BN (lightly's CIFAR benchmark backbone, a Sequential of its ResNet's children)
    projector: str = ""  # the projection head, e.g. "L512-2048,B2048,R,L2048-128" ("" = none: the projection is the features)
    mean: str = ""  # per-channel normalisation the encoder was trained with, e.g. "0.485,0.456,0.406"
    std: str = ""
    loss: str = field(default="", metadata={"choices": foreign_losses})  # the training loss, when known (sharpness terms need it)
    source: str = ""  # the checkpoint file as given
    sha256: str = ""  # of that file


@dataclass
class EncoderConfig:
    arch: Literal["mlp", "convnet", "resnet18", "external"] = "convnet"
    width: float = field(default=1.0, metadata=_range(gt=0, le=64))
    proj_hidden: int = field(default=512, metadata=_range(ge=1, le=65_536))
    proj_dim: int = field(default=128, metadata=_range(ge=1, le=65_536))
    dual_bn: bool = False  # benign and adversarial BatchNorm branches (robust CL, PAPERS §1)
    external: ExternalConfig = field(default_factory=ExternalConfig)


@dataclass
class MethodConfig:
    """The self-supervised method and its hyperparameters (PAPERS.md §1–§4).

    Each key is read only by the methods named in its comment; the others ignore it.
    """

    name: str = field(default="simclr", metadata={"choices": method_names})  # a method of catalog.METHODS; external: imported, not trained here
    temperature: float = field(default=0.5, metadata=_range(gt=0))  # InfoNCE τ: all but barlow_twins, cacr
    lambd: float = field(default=5e-3, metadata=_range(ge=0))  # Barlow Twins off-diagonal weight
    # SAM / ASAM (ssa_clr: on the loss; robust_cl: on the benign loss only)
    use_sam: bool = True
    rho: float = field(default=0.05, metadata=_range(gt=0))  # radius of the weight ball
    adaptive: bool = False  # ASAM: the ball is ||e / |θ| || <= rho
    # Fourier amplitude mixing (ssa_clr)
    use_fourier: bool = True
    fourier_eta: float = field(default=0.5, metadata=_range(ge=0, le=1))  # λ ~ U(0, η)
    # CACR / CCT (cacr)
    positives: int = field(default=4, metadata=_range(ge=1, le=64))  # K positive views: K + 1 views per image
    tau_pos: float = field(default=1.0, metadata=_range(ge=0))  # τ⁺ of the attraction weights
    tau_neg: float = field(default=0.9, metadata=_range(ge=0))  # τ⁻ of the repulsion weights
    uniform_pos: bool = False  # ablation: w⁺ = 1/K
    uniform_neg: bool = False  # ablation: w⁻ = 1/(B − 1)
    # adversarial views by PGD-Linf on the second view (robust_cl, rocl)
    eps: float = field(default=8 / 255, metadata=_range(gt=0))
    alpha: float = field(default=2 / 255, metadata=_range(gt=0))
    steps: int = field(default=7, metadata=_range(ge=1, le=10_000))
    benign_w: float = field(default=2.0, metadata=_range(ge=0))  # weight of the benign InfoNCE (robust_cl)
    d_w: float = field(default=0.1, metadata=_range(ge=0))  # weight of the discriminator term (robust_cl)
    disc_lr: float = field(default=0.2, metadata=_range(gt=0, le=100))  # discriminator learning rate (robust_cl)
    # two networks, no shared weights (two_network)
    full_batch: bool = False  # one step per epoch on the whole training set (optim.batch_size ignored)
    fixed_views: bool = False  # every epoch draws the same views: GD on one fixed empirical loss


@dataclass
class OptimConfig:
    name: Literal["sgd", "lars", "adam"] = "sgd"
    lr: float = field(default=0.06, metadata=_range(gt=0, le=100))  # LARS at batch 4096 uses ~5; beyond 100 every step overflows
    momentum: float = field(default=0.9, metadata=_range(ge=0, lt=1))
    weight_decay: float = field(default=5e-4, metadata=_range(ge=0, le=1))
    epochs: int = field(default=20, metadata=_range(ge=1, le=100_000))
    warmup_epochs: int = field(default=0, metadata=_range(ge=0, le=100_000))
    batch_size: int = field(default=256, metadata=_range(ge=2, le=65_536))  # a contrastive loss needs negatives


@dataclass
class EvalConfig:
    knn_k: int = field(default=200, metadata=_range(ge=1, le=100_000))
    knn_t: float = field(default=0.1, metadata=_range(gt=0))
    linear_steps: int = field(default=200, metadata=_range(ge=1, le=100_000))  # L-BFGS iterations
    linear_weight_decay: float = field(default=1e-4, metadata=_range(ge=0))


@dataclass
class MeasureConfig:
    """How `clbounds measure` estimates the terms; every value also goes into the protocol."""

    n_samples: int = field(default=256, metadata=_range(ge=8, le=1_000_000))  # test inputs used per term
    batch_size: int = field(default=128, metadata=_range(ge=2, le=65_536))  # InfoNCE batch for loss terms
    views: int = field(default=8, metadata=_range(ge=2, le=1024))  # M augmentations for R_ε and d_A
    eps: float = field(default=0.5, metadata=_range(gt=0))  # R_ε threshold, normalised features
    delta: float | None = field(default=None, metadata=_range(gt=0))  # σ(δ) pixel-L2 threshold; None: the dataset's reference δ (measure.reference_delta)
    sigma_per_class: int = field(default=40, metadata=_range(ge=2, le=100_000))  # inputs per class for d_A and σ(δ)
    rho: float = field(default=0.05, metadata=_range(gt=0))  # sharpness radius
    sharpness_steps: int = field(default=5, metadata=_range(ge=1, le=10_000))
    sharpness_batches: int = field(default=1, metadata=_range(ge=1, le=10_000))
    sharpness_m: int = field(default=32, metadata=_range(ge=2, le=65_536))  # sub-batch size of m-sharpness
    noise_sigma: float = field(default=0.01, metadata=_range(gt=0))  # average-case sharpness
    hessian_iters: int = field(default=10, metadata=_range(ge=2, le=10_000))
    trace_samples: int = field(default=8, metadata=_range(ge=1, le=10_000))  # Hutchinson probes
    attack_eps: float = field(default=8 / 255, metadata=_range(gt=0))
    attack_alpha: float = field(default=0.8 / 255, metadata=_range(gt=0))
    attack_steps: int = field(default=20, metadata=_range(ge=1, le=10_000))
    attack_l2_eps: float = field(default=0.5, metadata=_range(gt=0, le=100))  # the unseen PGD-L2 attack of robust CL (PAPERS §1): ε = 0.5
    attack_l2_alpha: float = field(default=0.05, metadata=_range(gt=0, le=100))  # its step; attack_steps steps
    autoattack: bool = False  # also AutoAttack (standard, L∞ at attack_eps) on the linear probe: the "autoattack" group, needs the torchattacks extra
    center_views: int = field(default=4, metadata=_range(ge=1, le=1024))  # augmented views per training input for Huang's class centres
    pac_bayes_units: int = field(default=64, metadata=_range(ge=2, le=100_000))  # most disjoint train batches (i.i.d. units) of the PAC-Bayes terms
    controls: bool = True  # also measure the terms on the controls (random init, shuffled labels, random embeddings)
    # Stop an estimate when the verdicts that read it are decided (the SSA-CLR ρ-ball ascent when
    # the bound's lower limit is already vacuous); false: the full budget, for comparison.
    sequential: bool = True


@dataclass
class SlurmConfig:
    """How ``--executor slurm`` submits a grid: each item one job (train, eval, measure) of one
    job array. Not part of the run id: where a run trains does not change it."""

    partition: str = ""  # empty: the cluster's default partition
    gpus_per_node: int = field(default=1, metadata=_range(ge=0, le=64))
    cpus_per_task: int = field(default=8, metadata=_range(ge=1, le=1024))
    mem_gb: int = field(default=32, metadata=_range(ge=1, le=16_384))
    timeout_min: int = field(default=240, metadata=_range(ge=1, le=525_600))  # a job past it is checkpointed and requeued
    array_parallelism: int = field(default=64, metadata=_range(ge=1, le=100_000))  # jobs of the array running at once
    max_requeues: int = field(default=3, metadata=_range(ge=0, le=100))  # timeouts after which a job is requeued, at most
    sbatch: str = ""  # additional sbatch parameters, e.g. "--account=abc --qos=high --constraint=a100"
    setup: str = ""  # shell commands run before each job, separated by ";", e.g. "module load cuda/12.1; source env/bin/activate"


@dataclass
class Config:
    name: str = "run"
    seed: int = field(default=0, metadata=_range(ge=0, le=2**32 - 1))
    device: str = "auto"  # auto, cpu, mps, cuda or cuda:N
    compile: bool = False  # torch.compile the networks' forward passes (a GPU speed option)
    data: DataConfig = field(default_factory=DataConfig)
    augment: str = "abcde"
    color_strength: float = field(default=0.5, metadata=_range(ge=0))
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Short hash of everything that decides the trained weights, seed included.

        ``name`` (a label), ``device``, ``compile`` (the same function, compiled), ``eval``
        and ``measure`` (evaluation only) and ``slurm`` (where it runs) are left out, so
        relabelling a config or changing its probes reuses the trained encoder.
        """
        d = self.to_dict()
        for key in ("name", "device", "compile", "eval", "measure", "slurm"):
            d.pop(key)
        if d["encoder"]["arch"] != "external":  # ids of runs trained here stay what they were before imports existed
            d["encoder"].pop("external")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_range(path: str, value: float, bounds: dict[str, float]) -> None:
    ops = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="), "lt": (lambda v, b: v < b, "<"), "le": (lambda v, b: v <= b, "<=")}
    for name, bound in bounds.items():
        ok, sym = ops[name]
        if not ok(value, bound):
            allowed = " and ".join(f"{ops[n][1]} {b}" for n, b in bounds.items())
            raise ConfigError(f"{path}={value!r} is out of range: must be {allowed}")


def _coerce(path: str, value: Any, annotation: Any) -> Any:
    """Checks ``value`` against a field's annotation; returns it (ints widened to float)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{path}={value!r} is not allowed: choose one of {', '.join(map(str, choices))}{_did_you_mean(str(value), list(map(str, choices)))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(path, value, inner)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping of {', '.join(f.name for f in dataclasses.fields(annotation))}, got {value!r}")
        return _build(annotation, value, path + ".")
    if annotation is float and isinstance(value, str):
        try:  # PyYAML reads 1e-3 (no dot) as a string; accept what float() accepts
            value = float(value)
        except ValueError:
            pass
    expected = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}[annotation]
    if isinstance(value, bool) and annotation is not bool or not isinstance(value, expected):
        raise ConfigError(f"{path}={value!r} has the wrong type: expected {annotation.__name__}, got {type(value).__name__}")
    if annotation is float and not math.isfinite(value):  # NaN passes every comparison the wrong way
        raise ConfigError(f"{path}={value} is not a finite number")
    return float(value) if annotation is float else value


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ConfigError(f"unknown key {(prefix + str(key))!r}{_did_you_mean(str(key), list(fields))}; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        path = prefix + name
        kwargs[name] = _coerce(path, value, hints[name])
        choices = fields[name].metadata.get("choices")  # a registry's names, read when validating
        if choices and kwargs[name] not in (allowed := list(choices())):
            raise ConfigError(f"{path}={value!r} is not allowed: choose one of {', '.join(allowed)}{_did_you_mean(str(value), allowed)}")
        pattern = fields[name].metadata.get("pattern")
        if pattern and not re.fullmatch(pattern[0], str(kwargs[name])):
            raise ConfigError(f"{path}={value!r} is not allowed: give {pattern[1]}")
        bounds = fields[name].metadata.get("range")
        if bounds and kwargs[name] is not None:
            _check_range(path, kwargs[name], bounds)
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Validates a raw mapping (as parsed from YAML) into a :class:`Config`.

    Example:
        >>> config_from_dict({"optim": {"lr": 0.1}}).optim.lr
        0.1
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    cfg = _build(Config, raw)
    try:
        cfg.augment = parse_augment(cfg.augment)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise ConfigError(f"device={cfg.device!r} is not a device: choose auto, cpu, mps, cuda or cuda:N")
    if (cfg.method.name == "external") != (cfg.encoder.arch == "external"):
        raise ConfigError(f"method.name={cfg.method.name!r} with encoder.arch={cfg.encoder.arch!r}: 'external' is for encoders brought in with `clbounds import` "
                          "or the Python API, and needs both")
    if cfg.encoder.arch == "external" and not cfg.encoder.external.format:
        raise ConfigError("encoder.arch='external' needs encoder.external.format (torchvision, solo-learn, lightly, timm or python)")
    if cfg.optim.warmup_epochs >= cfg.optim.epochs and cfg.optim.warmup_epochs > 0:
        raise ConfigError(f"optim.warmup_epochs={cfg.optim.warmup_epochs} must be smaller than optim.epochs={cfg.optim.epochs}")
    _check_slurm(cfg.slurm)
    return cfg


SBATCH_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=[^\s;'\"`$\\]+)?")  # --name or --name=value, nothing a shell would expand


def _check_slurm(slurm: SlurmConfig) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.,-]*", slurm.partition):
        raise ConfigError(f"slurm.partition={slurm.partition!r} is not a partition name (letters, digits, _ . , -)")
    for token in slurm.sbatch.split():
        if not SBATCH_OPTION.fullmatch(token):
            raise ConfigError(f"slurm.sbatch: {token!r} is not an sbatch option; write --name or --name=value, e.g. --account=abc")
    if any(c in slurm.setup for c in "\n\r`"):
        raise ConfigError("slurm.setup: separate commands with ';', not newlines, and use no backquotes")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``key.sub=value`` strings to a raw mapping; values are parsed as YAML scalars."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=0.1")
        try:
            value = load_yaml(text, f"override {item!r}")
        except ConfigError:
            value = text
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = value
    return raw


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a bundled config such as ``quick-simclr-synthetic``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{Path(name_or_path).stem}.yaml"
    if bundled.is_file():
        return bundled
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(name_or_path)!r} not found: give a YAML path or a bundled name ({', '.join(names)})")


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> Config:
    """Reads, overrides and validates a config."""
    path = resolve_config_path(name_or_path)
    raw = load_yaml(read_config_text(path), str(path))
    return config_from_dict(apply_overrides({} if raw is None else raw, overrides or []))


def read_config_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path} is {path.stat().st_size:,} bytes; a config or preset is at most {MAX_YAML_BYTES:,}")
        return path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) file") from None
    except OSError as err:
        raise ConfigError(f"{path} cannot be read: {err.strerror or err}") from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
