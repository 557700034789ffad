"""The measure context: what every term group reads (the run's config, data, trained and
initial encoder, the fixed test sample and its augmented views, the δ of σ(δ)), and the
controls' contexts derived from it.

Features: "features" means the L2-normalised backbone output h/‖h‖ (Huang et al.'s f with
r = 1, what the probes use); "projection" means the projection head output the training
loss saw.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.bounds.common import unavailable_row
from clbounds.theory import geometry

from ..config import Config
from ..data import ImageDataset
from ..store.db import Row, RunRecord
from ..training.augment import Augment
from ..training.methods import get_method
from ..training.runs import initial_weights_known, load_encoder, open_run
from .probes import extract_features




#: The controls that measure the encoder's own model (Context.control), so read its pass cache.
SHARES_ENCODER = ("", "shuffled_labels", "random_embedding")


@dataclass
class Context:
    """What every term group needs: the run's config, data, encoder and fixed random views."""

    cfg: Config
    data: ImageDataset
    model: nn.Module  # the trained Encoder, in eval mode
    init_model: nn.Module  # the same architecture at its initial weights
    augment: Augment
    x: torch.Tensor  # uint8 test inputs used for the terms [N, C, H, W]
    y: torch.Tensor
    views: torch.Tensor  # M augmented views of x, float [M, N, C, H, W]
    device: torch.device
    delta: float = 0.0  # the δ of σ(δ), fixed for the run and its controls
    delta_note: str = ""
    control_name: str = ""  # "" for the trained encoder, else the control these terms are for
    loss_fn: Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None = None  # a foreign model's training loss
    # Inputs that do not depend on the encoder (augmented views of the training set), made
    # once and shared with the controls: augmentation dominates measure's cost on a CPU.
    cache: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] | None = None  # findings a group reports as it measures (a failed sanity check)
    # Whether init_model holds the weights training really started from: clbounds' own runs
    # (seeded) and API calls with init_model do; an imported checkpoint's is a seeded
    # re-initialisation, a control but not θ₀, so the terms that compare with θ₀ are not computed.
    init_known: bool = True

    def progress(self, text: str) -> None:
        """A step inside a long group (an attack, an estimator, a radius), so a group of
        minutes is never silent; nothing when the measure is silent."""
        if self.log:
            self.log(f"    {self.control_name + '/' if self.control_name else ''}{text}")

    def generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 7919 + salt)

    def initial_weights_unknown(self, term: str) -> Row | None:
        """The ``<term>_unavailable`` row of a term that compares with θ₀ when θ₀ is unknown (an
        imported encoder, the run's own terms); None when the term can be computed."""
        if self.init_known or self.control_name:
            return None
        return unavailable_row(term, "the weights this encoder started from are unknown (an imported checkpoint): "
                               "theta_0 is not invented; give them with `clbounds import --init FILE` or init_model to clbounds.measure")

    def control(self, name: str) -> "Context":
        """The context of a control (bounds/common.CONTROLS): the same inputs, views and
        settings, with the learned structure removed.

        - ``random_init``: the architecture at the seed's initial weights;
        - ``random_init_bn``: those weights with every BatchNorm's statistics recalibrated on
          the training inputs (:func:`recalibrated_batchnorm`), the control a reviewer asks for
          first: an untrained network whose activations are on the data's scale (raises
          :class:`ControlNotApplicable` for an encoder without BatchNorm);
        - ``shuffled_labels``: the trained encoder, train and test labels randomly permuted
          (class frequencies kept; the generator's ground truth dropped with them);
        - ``random_embedding``: the trained context; the groups that support it replace the
          embeddings by i.i.d. Gaussians themselves.
        """
        if name == "random_init":
            return dataclasses.replace(self, model=self.init_model, control_name=name)
        if name == "random_init_bn":
            if "random_init_bn" not in self.cache:
                self.cache["random_init_bn"] = recalibrated_batchnorm(self.init_model, self.data.x_train)
            if self.cache["random_init_bn"] is None:
                raise ControlNotApplicable("the encoder has no BatchNorm layer, so this control is the random-init control")
            return dataclasses.replace(self, model=self.cache["random_init_bn"], control_name=name)
        if name == "shuffled_labels":
            g = self.generator(31)
            shuffle = lambda t: t[torch.randperm(t.numel(), generator=g).to(t.device)]  # noqa: E731
            data = dataclasses.replace(self.data, y_train=shuffle(self.data.y_train), y_test=shuffle(self.data.y_test), generator=None, train_main=None)
            return dataclasses.replace(self, data=data, y=shuffle(self.y), control_name=name)
        if name == "random_embedding":
            return dataclasses.replace(self, control_name=name)
        raise ValueError(f"unknown control {name!r}")

    def train_views(self) -> torch.Tensor:
        """``measure.center_views`` augmentations of every training input, 8-bit: uint8 [V, n, C, H, W]."""
        if "train_views" not in self.cache:
            g, x = self.generator(13), self.data.x_train
            self.cache["train_views"] = torch.stack([
                torch.cat([to_uint8(self.augment(x[i : i + 2048], g)) for i in range(0, x.shape[0], 2048)]) for _ in range(self.cfg.measure.center_views)
            ])
        return self.cache["train_views"]

    @torch.no_grad()
    def train_view_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised backbone features, normalised projections) of :meth:`train_views`,
        flattened to [V·n, D], one backbone pass. Kept in the pass cache only for the encoder's
        own model, which the shuffled-labels control measures again (200,000 images at the
        paper preset, held for the rest of the measure: about 0.5 GB there); no other group or
        control reads them on another model."""
        entries = self._pass_cache() if self.control_name in SHARES_ENCODER else {}
        if not _intact(entries.get("train")):
            self.model.eval()
            x, feats, projs = self.train_views().flatten(0, 1), [], []
            for i in range(0, x.shape[0], 512):
                h = self.model(x[i : i + 512].float() / 255)
                feats.append(F.normalize(h.float(), dim=1))
                projs.append(F.normalize(self.model.projector(h).float(), dim=1))
            entries["train"] = _entry(torch.cat(feats), torch.cat(projs))
        return entries["train"][0], entries["train"][1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.raw_features(x), dim=1)

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features h(x) in eval mode; for the test inputs and their views, read from
        the pass cache (:meth:`_embedded`)."""
        cached = self._embedded(x)
        return cached[0].float() if cached is not None else extract_features(self.model, x)

    @torch.no_grad()
    def projections(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        cached = self._embedded(x, projections=True)
        if cached is not None:
            return cached[1]
        self.model.eval()
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        return torch.cat([self.model.projector(self.model(x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)])

    @torch.no_grad()
    def _embedded(self, x: torch.Tensor, projections: bool = False) -> list | None:
        """[h, z] of the test inputs ``self.x`` or one of ``self.views``, one backbone pass per
        tensor and per model for every group (issue 31: the groups embedded the same inputs and
        views up to seven times), None for any other tensor. z is computed from the cached h on
        first request (the same batches as :meth:`projections`). An entry holds only for the
        weights and BatchNorm statistics it was computed with (:meth:`_pass_cache`), and only
        while no caller has changed its tensors in place (:func:`_intact`)."""
        which = self._which(x)
        if which is None:
            return None
        entries = self._pass_cache()
        self.model.eval()
        entry = entries.get(which)
        if not _intact(entry):
            first = next(iter(self.model.parameters()), None)
            dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
            xs = x.float() / 255 if x.dtype == torch.uint8 else x
            entry = entries[which] = _entry(torch.cat([self.model(xs[i : i + 512].to(dtype)) for i in range(0, xs.shape[0], 512)]), None)  # the model's own dtype
        if projections and entry[1] is None:
            h = entry[0]
            entry = entries[which] = _entry(h, torch.cat([self.model.projector(h[i : i + 512]) for i in range(0, h.shape[0], 512)]))
        return entry

    def _pass_cache(self) -> dict:
        """The cached embeddings of ``self.model``, emptied when its parameters or buffers differ
        from the state they were computed at, or the test inputs or views changed. A group that
        perturbs the weights (an ascent, a PAC-Bayes draw) or runs BatchNorm in train mode
        restores them bitwise in place (``_preserved`` of theory/sharpness.py), so the cache
        survives it: a moved version counter only triggers a comparison with the snapshot, and
        a real difference empties the cache. A change that bypasses the version counters (a
        write through ``.data``) is not seen; nothing in clbounds makes one. The snapshot costs
        one copy of the weights per model measured (45 MB for a ResNet-18)."""
        states = self.cache.setdefault("embedded", {})
        tensors = [*self.model.parameters(), *self.model.buffers()]
        versions = tuple(t._version for t in tensors)
        identity = (tuple(id(t) for t in tensors), self.x.data_ptr(), self.x._version, self.views.data_ptr(), self.views._version)
        state = states.get(id(self.model))
        if state is not None and (state["model"] is not self.model or state["identity"] != identity):
            state = None
        if state is not None and state["versions"] != versions:
            if all(torch.equal(t, saved) for t, saved in zip(tensors, state["snapshot"])):
                state["versions"] = versions  # restored to the state the entries were computed at
            else:
                state = None
        if state is None:
            state = {"model": self.model, "identity": identity, "versions": versions, "snapshot": [t.detach().clone() for t in tensors], "entries": {}}
            states[id(self.model)] = state
        return state["entries"]

    def _which(self, x: torch.Tensor) -> str | int | None:
        """"x" if x is the test inputs, i if it is the i-th view (the same storage), else None."""
        if x is self.x or (x.shape == self.x.shape and x.dtype == self.x.dtype and x.data_ptr() == self.x.data_ptr() and x.stride() == self.x.stride()):
            return "x"
        if x.dim() == self.views.dim() - 1 and x.shape == self.views.shape[1:] and x.dtype == self.views.dtype and x.stride() == self.views.stride()[1:]:
            offset = x.data_ptr() - self.views.data_ptr()
            step = self.views.stride(0) * self.views.element_size()
            if offset >= 0 and offset % step == 0 and offset // step < self.views.shape[0]:
                return offset // step
        return None

    def normalized_projections(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projections(x), dim=1)

    def ssl_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed pairs of augmented views, for the terms that differentiate the loss."""
        m, b = self.cfg.measure, self.cfg.measure.batch_size
        return [(self.views[0, i * b : (i + 1) * b], self.views[1, i * b : (i + 1) * b]) for i in range(min(m.sharpness_batches, max(1, self.x.shape[0] // b)))]

    @property
    def loss_name(self) -> str | None:
        """The training loss: the method's; for an imported encoder the one recorded (None if unknown)."""
        if self.loss_fn is not None:
            return "the given loss_fn"
        if self.cfg.encoder.arch == "external":
            return self.cfg.encoder.external.loss or None
        return self.cfg.method.name

    @property
    def logs_dynamics(self) -> bool:
        """Whether training logged the gradient norm and weight movement of every step (two_network)."""
        return self.cfg.encoder.arch != "external" and get_method(self.cfg.method.name).logs_dynamics

    def ssl_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The method's training loss on one batch of view pairs (``loss_fn`` of theory/)."""
        if self.loss_fn is not None:
            return self.loss_fn(model, batch)
        if self.loss_name is None:
            raise ValueError("the training loss of this encoder is not known: give loss_fn or method")
        method = get_method(self.loss_name)
        criterion = (method.pair_criterion or method.criterion)(self.cfg.method)
        v1, v2 = batch
        return criterion(model.projector(model(v1)), model.projector(model(v2)))

    @property
    def split(self) -> str:
        return f"test n={self.x.shape[0]}"


class ControlNotApplicable(ValueError):
    """A control that would change nothing for this encoder (it is another control there)."""


#: Inputs used to recalibrate BatchNorm statistics: the cumulative average settles within a few
#: thousand inputs, and this bounds the cost on CIFAR-sized sets.
BN_CALIBRATION_INPUTS = 4096


@torch.no_grad()
def _entry(*tensors: torch.Tensor | None) -> tuple:
    """A pass-cache entry: its tensors and their in-place version counters when stored."""
    return (*tensors, tuple(-1 if t is None else t._version for t in tensors))


def _intact(entry: tuple | None) -> bool:
    """Whether a cached entry exists and no caller has changed its tensors in place since."""
    return entry is not None and all(t is None or t._version == v for t, v in zip(entry[:-1], entry[-1]))


def recalibrated_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256, max_inputs: int = BN_CALIBRATION_INPUTS) -> nn.Module | None:
    """A copy of ``model`` whose BatchNorm running statistics (backbone and projection head) are
    the cumulative averages over the first ``max_inputs`` of ``x`` (uint8 or [0,1] images), in
    eval mode; None when the model has no BatchNorm. The weights are untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return None
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the cumulative average over every batch, not an exponential one
    model.train()
    x = x[:max_inputs]
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        if xb.shape[0] < 2:  # BatchNorm needs two inputs per batch in train mode
            break
        h = model(xb.float() / 255 if xb.dtype == torch.uint8 else xb.float())
        if hasattr(model, "projector"):
            model.projector(h)
    return model.eval()


def augmented_distances(x: torch.Tensor, y: torch.Tensor, views: torch.Tensor, augment: Augment) -> torch.Tensor:
    """d̂_A, an upper estimate of Huang et al.'s augmented distance, for σ(δ) and its δ.

    Between inputs of one class it is the smaller of two estimates, each a minimum over pairs of
    augmentations and so ≥ d_A: (a) the M sampled views with the input itself added (the
    identity is in every augmentation's support: each transform can be off and the crop can take
    the whole image), and (b) where the augmentation crops, aligned crop pairs
    (:func:`clbounds.theory.geometry.aligned_crop_distance`), which undo a translation or a
    circular shift between two inputs that sampled views almost never undo. Between classes
    (unused by σ(δ)) it is (a).

    Args:
        x: [N, C, H, W] inputs, uint8 or float in [0, 1].
        y: [N] class labels.
        views: [M, N, C, H, W] float views of x.
        augment: the augmentation that made the views.
    """
    xf = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    crops = "a" in augment.spec
    identity = not crops or augment.crop_scale[1] >= 1.0
    d_a = geometry.augmented_distance(torch.cat([xf[None].to(views.dtype), views]) if identity else views)
    if crops:  # only within a class: +inf elsewhere leaves (a)
        d_a = torch.minimum(d_a, _aligned(x, y, augment.crop_scale).to(d_a.device, d_a.dtype))
    return d_a


_ALIGNED_CACHE: dict[str, torch.Tensor] = {}  # the runs of a grid share inputs and labels: aligned crops once per process


def _aligned(x: torch.Tensor, y: torch.Tensor, crop_scale: tuple[float, float]) -> torch.Tensor:
    """Aligned crop distances within classes (they depend on the inputs, labels and crop scale only)."""
    key = hashlib.sha1(x.cpu().contiguous().numpy().tobytes() + y.cpu().contiguous().numpy().tobytes() + repr((x.dtype, tuple(x.shape), crop_scale)).encode()).hexdigest()
    if key not in _ALIGNED_CACHE:
        if len(_ALIGNED_CACHE) >= 16:
            _ALIGNED_CACHE.pop(next(iter(_ALIGNED_CACHE)))
        xf = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        _ALIGNED_CACHE[key] = geometry.aligned_crop_distance(xf, crop_scale=crop_scale, groups=y).cpu()
    return _ALIGNED_CACHE[key]


def to_uint8(v: torch.Tensor) -> torch.Tensor:
    return (v * 255).round().to(torch.uint8)


def scalar(t: torch.Tensor | float) -> float:
    return float(t.item() if torch.is_tensor(t) else t)


DELTA_GRID = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: The reference of the default δ: one augmentation and sample for every run on a dataset, so
#: that σ(δ) compares runs (augmentations) at one δ.
REFERENCE_AUGMENT, REFERENCE_COLOR, REFERENCE_PER_CLASS, REFERENCE_SEED = "abcde", 0.5, 40, 12345


_REFERENCE_CACHE: dict[str, tuple[float, str]] = {}  # the runs of one grid share their data: δ once per process


def reference_delta(cfg: Config, data: ImageDataset, device: torch.device, augment_spec: str = REFERENCE_AUGMENT) -> tuple[float, str]:
    """The δ of σ(δ) when ``measure.delta`` is not set, and how it was found.

    It depends on the dataset (and on M = ``measure.views``, since d_A is a minimum over M
    sampled views), never on the run's augmentation, encoder or seed of the terms, so every
    run on one dataset is compared at one δ:

    - synthetic: the generator's own δ, the largest d_A between two main-part members of one
      class, on a fresh sample of main-part members only (40 per class, more when there are
      fewer than 10 classes, so about 8,000 pairs whatever K and ``main_fraction``). The noise
      is Gaussian, so a main part has no finite diameter: δ is a sample maximum, and a measured
      sample's P main pairs hold one above it with probability about P/(P + 8,000); each such
      pair costs σ̂ one input of its class;
    - other data: the median same-class d_A of the first 40 training inputs per class.

    Both under the reference augmentation ``abcde`` at colour strength 0.5 and a fixed seed
    (``augment_spec`` picks another: the generator's δ *under a run's own augmentation* is what
    σ(δ) must recover ``main_fraction`` at, which ``tests/test_verdicts.py`` checks).
    """
    m, k = cfg.measure, data.num_classes
    fingerprint = [data.name, list(data.x_train.shape), float(data.x_train.reshape(-1)[:4096].float().sum()), int(data.y_train[:4096].sum())]
    key = json.dumps([dataclasses.asdict(cfg.data), cfg.seed, m.views, augment_spec, fingerprint, k], sort_keys=True, default=str)
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = _reference_delta(m, data, device, augment_spec)
    return _REFERENCE_CACHE[key]


def _reference_delta(m, data: ImageDataset, device: torch.device, augment_spec: str) -> tuple[float, str]:
    k = data.num_classes
    g = torch.Generator().manual_seed(REFERENCE_SEED)
    augment = Augment(augment_spec, image_size=data.image_shape[-1], color_strength=REFERENCE_COLOR)
    ref = f"reference augmentation {augment_spec} colour {REFERENCE_COLOR:g}, M={m.views} views, seed {REFERENCE_SEED}"
    if data.generator is not None:
        n = k * math.ceil(REFERENCE_PER_CLASS * math.sqrt(max(1.0, 10 / k)))
        sample = data.generator.sample(torch.arange(n) % k, g, main=torch.ones(n, dtype=torch.bool))
        x, y, main = sample.x.to(device), sample.y.to(device), sample.main.to(device)
    else:
        idx = torch.cat([torch.nonzero(data.y_train == c).flatten()[:REFERENCE_PER_CLASS] for c in range(k)])
        x, y, main = data.x_train[idx], data.y_train[idx], None
    d_a = augmented_distances(x, y, torch.stack([augment(x, g) for _ in range(m.views)]), augment)
    same = (y[:, None] == y[None]) & ~torch.eye(y.numel(), dtype=torch.bool, device=y.device)
    if main is not None:
        pairs = same & main[:, None] & main[None]
        return scalar(d_a[pairs].max()), f"synthetic generator's delta: max d_A over main-part pairs of one class, {n // k} main-part members per class, {ref}"
    return scalar(d_a[same].median()), f"median same-class d_A of the first {REFERENCE_PER_CLASS} train inputs per class, {ref}"


def make_context(cfg: Config, data: ImageDataset, model: nn.Module, init_model: nn.Module, device: torch.device,
                 loss_fn: Callable | None = None, init_known: bool = True) -> Context:
    """The context of one encoder on one dataset: the test sample, its views and δ, all fixed by ``cfg``."""
    m = cfg.measure
    g = torch.Generator().manual_seed(cfg.seed * 7919)
    n = min(m.n_samples, data.x_test.shape[0])
    pick = torch.randperm(data.x_test.shape[0], generator=g)[:n].to(device)
    x, y = data.x_test[pick], data.y_test[pick]
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    views = torch.stack([augment(x, g) for _ in range(m.views)])
    delta, note = (m.delta, "measure.delta") if m.delta is not None else reference_delta(cfg, data, device)
    return Context(cfg, data, model, init_model, augment, x, y, views, device, delta=delta, delta_note=note, loss_fn=loss_fn, init_known=init_known)


def build_context(record: RunRecord) -> Context:
    run = open_run(record)
    init_model = load_encoder(record, run.data.image_shape, random_init=True).to(run.device).eval()
    return make_context(run.cfg, run.data, run.encoder, init_model, run.device, init_known=initial_weights_known(record))
