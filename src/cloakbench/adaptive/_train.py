"""Shared core of the two end-to-end trainings (robust extractor, end-to-end classifier).

The defaults are FaceCure's recipe (``train_robust_features.py`` and ``eval_e2e.py``, which
build their model with Fawkes v0.3's ``load_victim_model`` under standalone Keras <= 2.3.1):
the extractor plus a ``Dense`` softmax head over identities (Glorot-uniform kernel, zero bias),
trained end to end with cross-entropy; ``fit_generator`` with 500 steps per epoch, 10 epochs,
batches of 32 whose identities are drawn uniformly with replacement (then one picture of that
identity's pool, clean and cloaked copies alike); a horizontal flip with probability 0.25
(FaceCure flips when ``randint(2)`` and then with rate 0.5); Keras' ``Adadelta()`` (lr 1.0,
rho 0.95, epsilon 1e-7). Every other value of a key is a deviation, recorded with the settings
(``deviations`` lists the keys that differ from FaceCure's).

Deterministic on CPU for a seed: the head's initialisation, the sampler and the flips draw
from one ``torch.Generator``; the global RNG is forked and seeded around the loop so nothing
outside can make two runs differ (and the caller's RNG state is left untouched).

Every picture is read once, through :func:`cloakbench.images.read_pictures`, which appends each path it opens
to a caller-supplied list: the *manifest of reads* that lets a test (and the rule) prove which
pictures a training saw.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..extractors.base import Extractor
from ..extractors.heads import HEADS

log = logging.getLogger(__name__)

#: FaceCure's recipe (see the module docstring): the defaults of every end-to-end training.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,              # FaceCure --n_epochs
    "batch_size": 32,          # FaceCure --batch-size
    "steps_per_epoch": 500,    # FaceCure fit_generator(steps_per_epoch=500); null = ceil(pictures / batch)
    "optimizer": "adadelta",   # adadelta | sgd | adam (FaceCure: Keras Adadelta())
    "lr": 1.0,                 # Keras <= 2.3 Adadelta default
    "rho": 0.95,               # Adadelta's decay (Keras default)
    "eps": 1e-7,               # Adadelta's epsilon (Keras' K.epsilon())
    "momentum": 0.9,           # sgd only
    "weight_decay": 0.0,
    "head": "softmax",         # softmax (Keras Dense + softmax) | cosface | arcface
    "head_init": "glorot_uniform",  # softmax head: glorot_uniform (Keras Dense) | fan_in_uniform (U(+-1/sqrt(dim)))
    "margin": 0.35,            # margin heads only
    "scale": 30.0,             # margin heads only
    "flip": True,              # random horizontal flips
    "flip_prob": 0.25,         # probability a training picture is flipped (FaceCure: randint(2), then rate 0.5)
    "balanced": True,          # identities drawn uniformly per picture of a batch (FaceCure's sampler)
}
#: The keys whose value is FaceCure's (``deviations`` compares against these).
FACECURE = {k: TRAIN_DEFAULTS[k] for k in ("epochs", "batch_size", "steps_per_epoch", "optimizer", "lr", "rho",
                                           "eps", "weight_decay", "head", "head_init", "flip", "flip_prob",
                                           "balanced")}
HEAD_INITS = ("glorot_uniform", "fan_in_uniform")
OPTIMIZERS = ("adadelta", "sgd", "adam")


def train_settings(given: dict[str, Any] | None, key: str,
                   defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``given`` over the defaults and validate; errors name ``key`` (a config path)."""
    defaults = dict(TRAIN_DEFAULTS if defaults is None else defaults)
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{key}: unknown keys {unknown}; known: {sorted(defaults)}")
    s = {**defaults, **given}

    def need(ok: bool, k: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key}.{k}: {what}, got {s[k]!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(is_int(s["epochs"]) and s["epochs"] >= 1, "epochs", "a positive integer")
    need(is_int(s["batch_size"]) and s["batch_size"] >= 2, "batch_size", "an integer >= 2")
    need(s["steps_per_epoch"] is None or (is_int(s["steps_per_epoch"]) and s["steps_per_epoch"] >= 1),
         "steps_per_epoch", "null or a positive integer")
    need(s["optimizer"] in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}")
    for k in ("lr", "scale", "eps"):
        need(isinstance(s[k], (int, float)) and not isinstance(s[k], bool) and s[k] > 0, k, "a positive number")
    need(isinstance(s["rho"], (int, float)) and 0 <= s["rho"] < 1, "rho", "a number in [0, 1)")
    need(isinstance(s["flip_prob"], (int, float)) and 0 <= s["flip_prob"] <= 1, "flip_prob", "a number in [0, 1]")
    need(s["head_init"] in HEAD_INITS, "head_init", f"one of {list(HEAD_INITS)}")
    for k in ("momentum", "weight_decay", "margin"):
        need(isinstance(s[k], (int, float)) and s[k] >= 0, k, "a number >= 0")
    need(s["head"] == "softmax" or s["head"] in HEADS, "head", f"one of {['softmax', *sorted(HEADS)]}")
    for k in ("flip", "balanced"):
        need(isinstance(s[k], bool), k, "true or false")
    return s


def deviations(settings: dict[str, Any]) -> list[str]:
    """The keys of ``settings`` whose value differs from FaceCure's recipe (sorted)."""
    return sorted(k for k, v in FACECURE.items() if settings.get(k) != v)


# ---------------------------------------------------------------------------
# sampling, augmentation, heads
# ---------------------------------------------------------------------------
def generator(seed: int, *offset: int) -> torch.Generator:
    """A CPU generator seeded from (seed, offsets) through numpy's SeedSequence (stable)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(np.random.SeedSequence([int(seed), *map(int, offset)]).generate_state(1)[0]))
    return g


def balanced_batch(targets: torch.Tensor, n_classes: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """Indices of one batch: identities uniformly (with replacement), then a picture of each."""
    order = torch.argsort(targets, stable=True)
    counts = torch.bincount(targets, minlength=n_classes)
    offsets = torch.cumsum(counts, 0) - counts
    present = torch.nonzero(counts > 0).flatten()
    cls = present[torch.randint(len(present), (batch,), generator=g)]
    within = (torch.rand(batch, generator=g) * counts[cls]).long().clamp(max=counts[cls] - 1)
    return order[offsets[cls] + within]


def flip_batch(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each picture of ``x`` horizontally with probability ``p`` (independently)."""
    flip = torch.rand(x.shape[0], generator=g) < p
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)


# ---------------------------------------------------------------------------
# heads and the training loop
# ---------------------------------------------------------------------------
class SoftmaxHead(nn.Module):
    """Plain linear classifier (Keras' Dense + softmax in FaceCure); same interface as the margin
    heads. ``init``: ``glorot_uniform`` (Keras Dense: U(+-sqrt(6 / (dim + classes))), FaceCure's)
    or ``fan_in_uniform`` (U(+-1/sqrt(dim))); the bias starts at zero either way."""

    def __init__(self, dim: int, n_classes: int, g: torch.Generator, init: str = "glorot_uniform"):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)
        if init not in HEAD_INITS:
            raise ValueError(f"head init {init!r} not in {HEAD_INITS}")
        bound = math.sqrt(6.0 / (dim + n_classes)) if init == "glorot_uniform" else 1.0 / math.sqrt(dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.rand(n_classes, dim, generator=g) * 2 * bound - bound)
            self.linear.bias.zero_()

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.linear(emb)
        return logits, logits

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear(emb)


class _MarginWrap(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, emb, labels):
        return self.head(emb, labels)

    def logits(self, emb):
        return self.head.cosine(emb) * self.head.scale


def make_head(kind: str, dim: int, n_classes: int, settings: dict[str, Any], g: torch.Generator) -> nn.Module:
    if kind == "softmax":
        return SoftmaxHead(dim, n_classes, g, settings.get("head_init", "glorot_uniform"))
    return _MarginWrap(HEADS[kind](dim, n_classes, scale=settings["scale"], margin=settings["margin"],
                                   generator=g))


def make_optimizer(params, settings: dict[str, Any]) -> torch.optim.Optimizer:
    kind, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if kind == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=settings.get("rho", 0.95), eps=settings.get("eps", 1e-7),
                                    weight_decay=wd)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=wd)


def embedding_dim(model: Extractor, device: torch.device) -> int:
    """The model's output width (probed once when the class does not say)."""
    dim = int(getattr(model, "embedding_dim", 0) or 0)
    if dim:
        return dim
    was = model.training
    model.eval()
    with torch.no_grad():
        dim = int(model(torch.zeros(2, 3, model.input_size, model.input_size, device=device)).shape[1])
    model.train(was)
    return dim


def fit(model: Extractor, images: torch.Tensor, targets: torch.Tensor, n_classes: int,
        settings: dict[str, Any], *, seed: int, device: str | torch.device = "cpu",
        desc: str = "fine-tune") -> tuple[nn.Module, list[dict[str, float]]]:
    """Train ``model`` + a fresh head end to end on uint8 ``images`` (Nx3xHxW) and ``targets``.

    Returns (head, per-epoch history). ``model`` is trained in place and left in eval mode.
    """
    dev = torch.device(device)
    n = int(images.shape[0])
    if n < 2 or n_classes < 2:
        raise DataError(f"{desc}: need at least 2 pictures of 2 identities, got {n} of {n_classes}")
    g = generator(seed, 17)
    bs = settings["batch_size"]
    steps = settings["steps_per_epoch"] or max(1, math.ceil(n / bs))
    history: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model.to(dev).train().requires_grad_(True)
        head = make_head(settings["head"], embedding_dim(model, dev), n_classes, settings, g).to(dev)
        head.train()
        opt = make_optimizer(list(model.parameters()) + list(head.parameters()), settings)
        targets = targets.long()
        bar = tqdm(total=settings["epochs"] * steps, desc=desc, mininterval=5.0)
        for epoch in range(settings["epochs"]):
            perm = torch.randperm(n, generator=g)
            loss_sum, correct, seen = 0.0, 0, 0
            for k in range(steps):
                if settings["balanced"]:
                    idx = balanced_batch(targets, n_classes, bs, g)
                else:
                    idx = perm[(k * bs) % n:][:bs]
                    if len(idx) < 2:  # never a batch-norm batch of one
                        idx = perm[:bs]
                x = images[idx].to(dev).float().div_(255.0)
                if settings["flip"]:
                    x = flip_batch(x, g, settings.get("flip_prob", 0.25))
                y = targets[idx].to(dev)
                logits, plain = head(model(x), y)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((plain.argmax(1) == y).sum())
                seen += len(idx)
                bar.update(1)
            row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
            log.info("%s epoch %d/%d: loss %.4f, train acc %.3f", desc, epoch + 1, settings["epochs"],
                     row["loss"], row["train_acc"])
        bar.close()
    model.eval()
    head.eval()
    return head, history


@torch.no_grad()
def predict_logits(model: Extractor, head: nn.Module, images: torch.Tensor, *,
                   device: str | torch.device = "cpu", batch: int = 64) -> torch.Tensor:
    """Logits (N x classes) of uint8 ``images`` in eval mode, no augmentation."""
    dev = torch.device(device)
    model.eval()
    head.eval()
    out = []
    for k in range(0, images.shape[0], batch):
        x = images[k:k + batch].to(dev).float().div_(255.0)
        out.append(head.logits(model(x)).cpu())
    return torch.cat(out) if out else torch.zeros((0, 0))
