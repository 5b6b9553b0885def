"""Train an in-pipeline recogniser generation (rule ``train_extractor``).

What and why:

* The backbone (an :class:`~.trained.TrainedExtractor` subclass) is trained as an identity
  classifier through a margin head (:mod:`.heads`, CosFace by default), the recipe of modern
  face recognisers; afterwards only the backbone is kept (a plain state dict), because the
  benchmark uses embeddings, never the classifier.
* Deterministic on CPU for a seed: weights, head, shuffling and augmentation all draw from
  one ``torch.Generator`` seeded with ``seed``; the global RNG is never consulted (the
  architectures have no dropout), and is additionally forked and seeded around the loop so a
  future layer that does use it cannot make two runs differ or disturb the caller.
* All pictures are loaded once into one uint8 tensor (the demo's ~800 112x112 crops are
  30 MB), so there is no DataLoader worker pool to seed and no per-epoch decoding cost.
* Augmentation runs on whole batches with tensor ops: ``flip`` (weak, generation 1) or
  ``strong`` (flip + random resized crop with small rotation + brightness/contrast/saturation
  jitter, generation 2); ``none`` for ablations. The model's default comes from its class.

Hyperparameters come from ``extractors.<name>.train`` (see :data:`DEFAULTS`; a model class may
override some in ``train_defaults``); unknown keys are rejected with a ConfigError naming them.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.roles import protected_identities, trainer_pictures
from ..errors import ConfigError, DataError
from ..io import sha256_file, write_json, write_state_dict
from ..images import read_pictures
from ..workflow import resolve_device
from .heads import HEADS
from .registry import extractor_class
from .trained import TrainedExtractor

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "epochs": 12,
    "batch_size": 64,
    "lr": 0.05,             # peak SGD learning rate (after a linear warm-up)
    "warmup_epochs": 1,
    "momentum": 0.9,
    "weight_decay": 5e-4,   # on conv/linear weights only (not BN/PReLU/biases)
    "head": "cosface",      # cosface | arcface
    "margin": 0.35,         # CosFace cosine margin (for ArcFace an angle in radians, e.g. 0.5)
    "scale": 30.0,
    "augmentation": None,   # none | flip | strong; None -> the model class's default
}
AUGMENTATIONS = ("none", "flip", "strong")


def train_settings(name: str, spec: dict[str, Any], cls: type[TrainedExtractor]) -> dict[str, Any]:
    """Merge DEFAULTS, the class's ``train_defaults`` and ``spec['train']``; validate."""
    given = dict(spec.get("train") or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"extractors.{name}.train: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    settings = {**DEFAULTS, **getattr(cls, "train_defaults", {}), **given}
    if settings["augmentation"] is None:
        settings["augmentation"] = cls.augmentation

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"extractors.{name}.train.{key}: {what}, got {settings[key]!r}")

    for key in ("epochs", "batch_size"):
        need(isinstance(settings[key], int) and settings[key] >= 1, key, "a positive integer")
    need(isinstance(settings["warmup_epochs"], int) and settings["warmup_epochs"] >= 0,
         "warmup_epochs", "a non-negative integer")
    for key in ("lr", "scale"):
        need(isinstance(settings[key], (int, float)) and settings[key] > 0, key, "a positive number")
    for key in ("momentum", "weight_decay", "margin"):
        need(isinstance(settings[key], (int, float)) and settings[key] >= 0, key, "a number >= 0")
    need(settings["head"] in HEADS, "head", f"one of {sorted(HEADS)}")
    need(settings["augmentation"] in AUGMENTATIONS, "augmentation", f"one of {list(AUGMENTATIONS)}")
    return settings


# ---------------------------------------------------------------------------
# data and augmentation
# ---------------------------------------------------------------------------
def augment(x: torch.Tensor, kind: str, out_size: int, g: torch.Generator) -> torch.Tensor:
    """Bx3xHxW float [0,1] -> augmented Bx3xout_size x out_size (randomness only from ``g``)."""
    b = x.shape[0]
    if kind in ("flip", "strong"):
        flip = torch.rand(b, generator=g) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1).to(x.device), x.flip(-1), x)
    if kind != "strong":
        if x.shape[-1] != out_size:
            x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
        return x
    # random resized crop (area 70-100 %, aspect 3/4-4/3) with a small rotation (+-10 deg)
    area = 0.70 + 0.30 * torch.rand(b, generator=g)
    log_ratio = (torch.rand(b, generator=g) * 2 - 1) * math.log(4 / 3)
    ratio = torch.exp(log_ratio)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (torch.rand(b, generator=g) * 2 - 1) * (1 - w)
    ty = (torch.rand(b, generator=g) * 2 - 1) * (1 - h)
    angle = (torch.rand(b, generator=g) * 2 - 1) * math.radians(10)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([w * cos, -h * sin, tx], 1),
                         torch.stack([w * sin, h * cos, ty], 1)], 1).to(x)
    grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour jitter: brightness, contrast, saturation in [0.7, 1.3]
    jitter = (0.7 + 0.6 * torch.rand(3, b, generator=g)).to(x)
    x = x * jitter[0].view(b, 1, 1, 1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = (x - gray.mean((2, 3), keepdim=True)) * jitter[1].view(b, 1, 1, 1) + gray.mean((2, 3), keepdim=True)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = gray + (x - gray) * jitter[2].view(b, 1, 1, 1)
    return x.clamp(0.0, 1.0)


def _param_groups(modules: Sequence[torch.nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
def train_extractor(name: str, spec: dict, image_paths: Sequence[Path], labels: Sequence[str],
                    out_path: Path, *, seed: int, device: str = "cpu",
                    forbidden_identities: Sequence[str] = ()) -> dict:
    """Train extractor ``name`` on (picture, identity) pairs; save its backbone state dict.

    Writes ``out_path`` (state dict, atomically) and ``out_path.with_suffix('.json')``
    (metadata) and returns that metadata. ``forbidden_identities`` (the protected users) are
    refused before any picture is read.
    """
    t0 = time.time()
    cls = extractor_class(spec.get("type", ""), name=name)
    if not (isinstance(cls, type) and issubclass(cls, TrainedExtractor)):
        raise ConfigError(f"extractors.{name}.type: '{cls.type_name}' is not trained in the pipeline")
    settings = train_settings(name, spec, cls)
    image_paths = [Path(p) for p in image_paths]
    labels = [str(label) for label in labels]
    if len(image_paths) != len(labels):
        raise DataError(f"train_extractor '{name}': {len(image_paths)} pictures but {len(labels)} labels")
    bad = sorted(set(labels) & set(map(str, forbidden_identities)))
    if bad:
        raise DataError(f"train_extractor '{name}': pictures of protected users {bad[:5]} were passed; a "
                        "trainer may never use a protected user's picture")
    identities = sorted(set(labels))
    if len(identities) < 2:
        raise DataError(f"train_extractor '{name}': need pictures of at least 2 identities, "
                        f"got {len(identities)} ({len(image_paths)} pictures)")
    index = {identity: i for i, identity in enumerate(identities)}
    targets = torch.tensor([index[label] for label in labels], dtype=torch.long)
    images = read_pictures(image_paths, desc="load training pictures")
    n = images.shape[0]
    log.info("train %s (%s): %d pictures of %d identities, %s", name, cls.type_name, n,
             len(identities), settings)

    dev = torch.device(device)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = cls(name, spec)
        model.init_weights(g)
        head = HEADS[settings["head"]](cls.embedding_dim, len(identities), scale=settings["scale"],
                                       margin=settings["margin"], generator=g)
        model.to(dev).train()
        head.to(dev).train()
        optimiser = torch.optim.SGD(_param_groups([model, head], settings["weight_decay"]),
                                    lr=settings["lr"], momentum=settings["momentum"], nesterov=True)
        bs = min(settings["batch_size"], n)
        steps_per_epoch = n // bs if n % bs < 2 else n // bs + 1  # never a BN batch of 1
        total = settings["epochs"] * steps_per_epoch
        warmup = settings["warmup_epochs"] * steps_per_epoch

        def lr_at(step: int) -> float:
            if step < warmup:
                return settings["lr"] * (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return settings["lr"] * 0.5 * (1 + math.cos(math.pi * progress))

        history = []
        step = 0
        bar = tqdm(total=total, desc=f"train {name}", mininterval=5.0)
        for epoch in range(settings["epochs"]):
            perm = torch.randperm(n, generator=g)
            loss_sum, correct, seen = 0.0, 0, 0
            for k in range(steps_per_epoch):
                idx = perm[k * bs:(k + 1) * bs]
                x = augment(images[idx].to(dev).float().div_(255.0), settings["augmentation"],
                            cls.input_size, g)
                y = targets[idx].to(dev)
                for group in optimiser.param_groups:
                    group["lr"] = lr_at(step)
                logits, plain = head(model(x), y)
                loss = F.cross_entropy(logits, y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                loss_sum += loss.item() * len(idx)
                correct += int((plain.argmax(1) == y).sum())
                seen += len(idx)
                step += 1
                bar.update(1)
            row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                   "lr": lr_at(step - 1)}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
            log.info("train %s epoch %d/%d: loss %.4f, train acc %.3f", name, epoch + 1,
                     settings["epochs"], row["loss"], row["train_acc"])
        bar.close()
        _recalibrate_batchnorm(model, images, dev, bs)
        clean_acc = _clean_accuracy(model, head, images, targets, dev)

    model.eval()
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    out_path = Path(out_path)
    write_state_dict(state, out_path)
    seconds = time.time() - t0
    meta = {
        "name": name, "type": cls.type_name, "family": cls.family, "seed": int(seed),
        "identities": len(identities), "pictures": n, "epochs": settings["epochs"],
        "settings": settings, "input_size": cls.input_size, "embedding_dim": cls.embedding_dim,
        "final_loss": history[-1]["loss"], "final_train_acc": history[-1]["train_acc"],
        "train_acc_clean": clean_acc, "history": history, "seconds": round(seconds, 2),
        "release_date": str(spec.get("release_date")) if spec.get("release_date") else None,
        "checkpoint": out_path.name, "sha256": sha256_file(out_path),
        "torch": torch.__version__, "device": str(dev), "machine": platform.machine(),
    }
    write_json(meta, out_path.with_suffix(".json"))
    log.info("train %s: done in %.1f s, final train acc %.3f (clean %.3f) -> %s", name, seconds,
             meta["final_train_acc"], clean_acc, out_path)
    return meta


def run_train_extractor(*, name: str, spec: dict[str, Any], manifest: str | Path, roles: str | Path,
                        images: str | Path, checkpoint: str | Path, seed: int, device: str) -> dict:
    """Rule ``train_extractor``: train ``name`` on the training pictures of every identity that
    is not protected (:func:`cloakbench.data.roles.trainer_pictures`); ``images``: the
    dataset's ``images`` folder (manifest paths are relative to its parent)."""
    role_table = pd.read_parquet(roles)
    train = trainer_pictures(pd.read_parquet(manifest), role_table, what=f"train_extractor '{name}'")
    log.info("training %s on %d pictures of %d non-protected identities", name, len(train),
             train["identity"].nunique())
    root = Path(images).parent
    return train_extractor(name, spec, [root / p for p in train["path"]], list(train["identity"]),
                           Path(checkpoint), seed=seed, device=resolve_device(device),
                           forbidden_identities=protected_identities(role_table))


@torch.no_grad()
def _recalibrate_batchnorm(model: TrainedExtractor, images: torch.Tensor, dev: torch.device,
                           batch: int) -> None:
    """Recompute BN running statistics on the clean training pictures with the final weights.

    Why: the running averages collected during training mix augmented pictures and weights of
    every step (momentum 0.1); on a short run they lag far behind, and eval-mode embeddings
    would then differ from what the network learnt (seen: 100 % train accuracy in train mode,
    50 % in eval mode after 18 steps). An exact average over one clean pass fixes that.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the pass
    model.train()
    for k in range(0, images.shape[0], batch):
        chunk = images[k:k + batch]
        if chunk.shape[0] < 2:  # BatchNorm1d cannot take a batch of one in train mode
            break
        model(chunk.to(dev).float().div_(255.0))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


@torch.no_grad()
def _clean_accuracy(model: TrainedExtractor, head: torch.nn.Module, images: torch.Tensor,
                    targets: torch.Tensor, dev: torch.device, batch: int = 256) -> float:
    """Accuracy of the (margin-free) head on the un-augmented training pictures, eval mode."""
    model.eval()
    correct = 0
    for k in range(0, images.shape[0], batch):
        x = images[k:k + batch].to(dev).float().div_(255.0)
        correct += int((head.cosine(model(x)).argmax(1).cpu() == targets[k:k + batch]).sum())
    model.train()
    return correct / images.shape[0]
