"""Detection of cloaked pictures by the adaptive trainer.

The trainer cloaks the public identities' training pictures itself and trains a binary
detector on (clean, cloaked) pairs; it can then drop (or down-weight) scraped pictures that
look cloaked. The paper (Radiya-Dixit et al., ICLR 2022) reports that cloaked pictures can be
detected, but its code (github.com/ftramer/FaceCure) has no detection script: the detectors and
their recipes below are cloakbench's own, not a reimplementation. Three detectors are offered:

* ``cnn``: a small CNN trained from scratch on the picture's high-pass residual ``x - box3(x)``
  (amplified x20), the classic steganalysis front end: a cloak is a faint, pixel-level signal
  that a from-scratch CNN on raw pixels does not find in a few hundred pictures (on the demo,
  PGD at 8/255: ROC AUC 0.43 on raw pixels, 0.98-1.0 on the residual); global average + max
  pooling, so it does not depend on where in the face the perturbation sits;
* ``features``: standardised logistic regression (or a small MLP) on a *frozen* registry
  extractor's L2-normalised embedding, plus (``inputs: both``, the default) simple image
  statistics of the high-frequency residual. Why both: a face embedding is trained to ignore
  pixel noise, so it sees a cloak only through the feature shift the cloak was optimised to
  cause (large against its own ensemble, smaller against other models), while the residual
  statistics (energy and tails of ``x - blur(x)`` and of the Laplacian, per channel, and the
  total variation) see the perturbation itself whatever model it targeted. ``inputs:
  embedding`` or ``stats`` isolates either part.
* ``finetune``: the usual transfer-learning recipe for a binary image classifier, with a face
  model as the pretrained network (no ImageNet weights can be downloaded here): a pretrained,
  differentiable registry extractor plus a two-way linear head, fine-tuned end to end
  (:func:`cloakbench.adaptive._train.fit`, balanced clean/cloaked batches, flips).

Measured on the 40-identity demo (fawkes_v10 public pairs, 125 + 125 pictures; tested on 56
cloaked protected vs 377 clean unseen pictures): ``cnn`` at 6 epochs ROC AUC 0.59, at 100 epochs
(lr 3e-3) 1.00 in 23 s on 2 cores, hence the defaults below; ``finetune`` on SFace, 6 epochs,
0.96 in 110 s; ``features`` on frozen SFace or cnn_2018 embeddings 0.50-0.60: with 9 public
identities a frozen identity embedding mostly learns *who* is in the training pairs, which
does not carry over to identities it never saw.

Evaluation (:func:`detection_sets`): positives are the protected users' *scraped* cloaked
pictures (after the platform's transforms, exactly what the trainer collects); negatives are
the uncloaked scraped training pictures of identities the detector never saw (role ``other``,
plus any protected user's uncloaked ones), passed through the same platform transforms.
Metrics (:func:`detection_metrics`): precision and recall at score 0.5, ROC AUC, TPR at 1 %
FPR, and ROC points for plotting. Cross-cloak evaluation is simply a detector trained on one
cloak's public pairs and scored on another cloak's scraped pictures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_score, recall_score, roc_auc_score, roc_curve
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..extractors.base import Extractor
from ..extractors.embedding import embed_batches
from ..extractors.registry import build_extractor
from ..images import read_pictures
from ..data.scrape import collect_shards
from ..records import Record, write_records
from ..workflow import resolve_device
from . import _train
from .robust import robust_training_pairs

log = logging.getLogger(__name__)

KINDS = ("cnn", "features", "finetune")
DEFAULTS: dict[str, dict[str, Any]] = {
    # From scratch on a few hundred pairs the CNN needs many short epochs (see the docstring).
    "cnn": {"epochs": 100, "batch_size": 32, "lr": 3e-3, "width": 16, "flip": True},
    "features": {"extractor": None, "inputs": "both", "model": "logistic", "C": 1.0},
    # A pretrained model needs few epochs and a small step (Adam 1e-4; Adadelta at 1.0, the
    # identity trainings' default, wrecks the pretrained filters on 250 pictures).
    "finetune": {"extractor": None, "epochs": 6, "batch_size": 32, "steps_per_epoch": None,
                 "optimizer": "adam", "lr": 1e-4, "flip": True},
}
#: detector kinds that need a configured extractor (``extractor`` key)
NEEDS_EXTRACTOR = ("features", "finetune")


def needs_extractor(settings: dict[str, Any]) -> str | None:
    """The extractor a detector's settings need loaded, or None."""
    if settings.get("type") == "finetune" or (settings.get("type") == "features"
                                              and settings.get("inputs", DEFAULTS["features"]["inputs"]) != "stats"):
        return settings.get("extractor")
    return None


def detector_settings(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Validate ``adaptive.detection.detectors.<name>`` ({type, ...params}); fill defaults."""
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"adaptive.detection.detectors.{name}.type: one of {list(KINDS)}, got {kind!r}")
    params = {k: v for k, v in spec.items() if k != "type"}
    unknown = sorted(set(params) - set(DEFAULTS[kind]))
    if unknown:
        raise ConfigError(f"adaptive.detection.detectors.{name}: unknown keys {unknown} for type "
                          f"'{kind}'; known: {sorted(DEFAULTS[kind])}")
    s = {**DEFAULTS[kind], **params}
    if kind == "cnn":
        for k in ("epochs", "batch_size", "width"):
            if not (isinstance(s[k], int) and s[k] >= 1):
                raise ConfigError(f"adaptive.detection.detectors.{name}.{k}: a positive integer, got {s[k]!r}")
        if not (isinstance(s["lr"], (int, float)) and s["lr"] > 0):
            raise ConfigError(f"adaptive.detection.detectors.{name}.lr: a positive number, got {s['lr']!r}")
    elif kind == "finetune":
        if not (isinstance(s["extractor"], str) and s["extractor"]):
            raise ConfigError(f"adaptive.detection.detectors.{name}.extractor: required for type "
                              "'finetune' (a configured, differentiable extractor name)")
        _finetune_settings(name, s)
    else:
        if s["inputs"] not in ("embedding", "stats", "both"):
            raise ConfigError(f"adaptive.detection.detectors.{name}.inputs: embedding | stats | both, "
                              f"got {s['inputs']!r}")
        if s["inputs"] != "stats" and not s["extractor"]:
            raise ConfigError(f"adaptive.detection.detectors.{name}.extractor: required when inputs "
                              f"is '{s['inputs']}' (a configured extractor name)")
        if s["model"] not in ("logistic", "mlp"):
            raise ConfigError(f"adaptive.detection.detectors.{name}.model: logistic | mlp, got {s['model']!r}")
    return {"type": kind, **s}


# ---------------------------------------------------------------------------
# image statistics
# ---------------------------------------------------------------------------
_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def image_statistics(x: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW in [0, 1] -> Bx13 statistics of the high-frequency content.

    Per channel: std of the residual ``x - box3(x)``, mean |Laplacian|, and the 99th percentile
    of |residual| (3 x 3 = 9); plus the residual's kurtosis averaged over channels, the total
    variation, the mean |residual| correlation between neighbouring pixels and the fraction of
    exactly-zero residuals (4).
    """
    b = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    res = (x - blur).flatten(2)                                   # B x 3 x HW
    lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"),
                   _LAPLACE.to(x).view(1, 1, 3, 3).repeat(3, 1, 1, 1), groups=3).abs().flatten(2)
    std = res.std(2)
    q99 = res.abs().quantile(0.99, dim=2)
    centred = res - res.mean(2, keepdim=True)
    kurt = (centred.pow(4).mean(2) / centred.pow(2).mean(2).clamp(min=1e-12).pow(2)).mean(1, keepdim=True)
    tv = ((x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
          + (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))).view(b, 1)
    r = (x - blur)
    corr = (r[..., :, 1:] * r[..., :, :-1]).mean((1, 2, 3)) / r.pow(2).mean((1, 2, 3)).clamp(min=1e-12)
    zeros = (res.abs() < 0.5 / 255).float().mean((1, 2)).view(b, 1)
    return torch.cat([std, lap.mean(2), q99, kurt, tv, corr.view(b, 1), zeros], 1)


# ---------------------------------------------------------------------------
# detectors
# ---------------------------------------------------------------------------
def highpass(x: torch.Tensor) -> torch.Tensor:
    """The residual ``x - box3(x)`` (replicate padding): the picture's high-frequency part."""
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


class DetectorCNN(nn.Module):
    """Small from-scratch binary CNN at full resolution -> one logit (cloaked)."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        # GroupNorm, not BatchNorm: no running statistics, so a short training on a few hundred
        # pictures scores the same in train and eval mode (calibrated probabilities at 0.5).
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), nn.GroupNorm(4, w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, 2, 1), nn.GroupNorm(4, w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.GroupNorm(4, 2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.GroupNorm(4, 4 * w), nn.ReLU(inplace=True))
        self.fc = nn.Linear(8 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(highpass(x) * 20.0)
        return self.fc(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)).squeeze(1)


@dataclass
class Detector:
    """A trained detector: ``score(paths)`` -> probability that each picture is cloaked."""

    name: str
    settings: dict[str, Any]
    predict: Callable[[torch.Tensor], np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    n_train: int = 0

    def score_images(self, images_u8: torch.Tensor, batch: int = 64) -> np.ndarray:
        out = [self.predict(images_u8[k:k + batch].float().div(255.0))
               for k in range(0, images_u8.shape[0], batch)]
        return np.concatenate(out) if out else np.zeros(0)

    def score(self, paths: Sequence[str | Path], *, reads: list[str] | None = None) -> np.ndarray:
        return self.score_images(read_pictures(list(paths), reads=reads, desc=f"score {self.name}"))


def _init_module(module: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
                if m.bias is not None:
                    m.bias.zero_()


def train_detector(name: str, spec: dict[str, Any], clean: Sequence[str | Path],
                   cloaked: Sequence[str | Path], *, seed: int = 0, device: str = "cpu",
                   extractor: Extractor | None = None, reads: list[str] | None = None) -> Detector:
    """Train detector ``name`` (``spec``: {type, ...}) on clean (label 0) vs cloaked (label 1) pictures.

    ``extractor``: the frozen model of a ``features`` detector, or the pretrained model a
    ``finetune`` detector trains in place (built by the caller from ``spec['extractor']``).
    Deterministic for a seed on CPU.
    """
    s = detector_settings(name, spec)
    if not len(clean) or not len(cloaked):
        raise DataError(f"detector {name}: need clean and cloaked training pictures, got "
                        f"{len(clean)} and {len(cloaked)}")
    t0 = time.time()
    images = read_pictures(list(clean) + list(cloaked), reads=reads, desc=f"detector {name}: read")
    y = np.r_[np.zeros(len(clean)), np.ones(len(cloaked))].astype(np.float32)
    if s["type"] == "cnn":
        det = _train_cnn(name, s, images, y, seed=seed, device=device)
    elif s["type"] == "finetune":
        det = _train_finetune(name, s, images, y, seed=seed, device=device, extractor=extractor)
    else:
        det = _train_features(name, s, images, y, seed=seed, device=device, extractor=extractor)
    det.train_seconds = round(time.time() - t0, 2)
    det.n_train = len(y)
    log.info("detector %s (%s) trained on %d clean + %d cloaked pictures in %.1f s", name, s["type"],
             len(clean), len(cloaked), det.train_seconds)
    return det


def _train_cnn(name, s, images, y, *, seed, device) -> Detector:
    dev = torch.device(device)
    g = _train.generator(seed, 31)
    n = images.shape[0]
    targets = torch.from_numpy(y)
    history = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = DetectorCNN(s["width"])
        _init_module(net, g)
        net.to(dev).train()
        opt = torch.optim.Adam(net.parameters(), lr=s["lr"])
        bs = min(s["batch_size"], n)
        for epoch in tqdm(range(s["epochs"]), desc=f"detector {name}", mininterval=5.0):
            perm = torch.randperm(n, generator=g)
            loss_sum, correct = 0.0, 0
            for k in range(0, n, bs):
                idx = perm[k:k + bs]
                if len(idx) < 2:
                    continue
                x = images[idx].to(dev).float().div_(255.0)
                if s["flip"]:
                    x = _train.flip_batch(x, g)
                logit = net(x)
                t = targets[idx].to(dev)
                loss = F.binary_cross_entropy_with_logits(logit, t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int(((logit > 0).float() == t).sum())
            history.append({"epoch": epoch + 1, "loss": loss_sum / n, "train_acc": correct / n})
            log.info("detector %s epoch %d: loss %.4f, train acc %.3f", name, epoch + 1,
                     history[-1]["loss"], history[-1]["train_acc"])
    net.eval()

    @torch.no_grad()
    def predict(x: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(net(x.to(dev))).cpu().numpy().astype(np.float64)

    return Detector(name, s, predict, history)


def _finetune_settings(name: str, s: dict[str, Any]) -> dict[str, Any]:
    """The end-to-end training settings of a ``finetune`` detector (validated like any training)."""
    given = {k: s[k] for k in ("epochs", "batch_size", "steps_per_epoch", "optimizer", "lr", "flip")}
    # Not FaceCure's identity recipe: this detector keeps flips at rate 0.5 and the fan-in head.
    return _train.train_settings({**given, "head": "softmax", "balanced": True, "flip_prob": 0.5,
                                  "head_init": "fan_in_uniform"},
                                 f"adaptive.detection.detectors.{name}")


def _train_finetune(name, s, images, y, *, seed, device, extractor) -> Detector:
    if extractor is None:
        raise ConfigError(f"detector {name} (finetune) needs extractor '{s['extractor']}'")
    if not getattr(extractor, "differentiable", True):
        raise ConfigError(f"adaptive.detection.detectors.{name}.extractor: '{s['extractor']}' is not "
                          "differentiable, so it cannot be fine-tuned end to end")
    settings = _finetune_settings(name, s)
    # Classes 0 = clean, 1 = cloaked; the balanced sampler draws each with probability 1/2.
    head, history = _train.fit(extractor, images, torch.from_numpy(y).long(), 2, settings, seed=seed,
                               device=device, desc=f"detector {name}")

    def predict(x: torch.Tensor) -> np.ndarray:
        logits = _train.predict_logits(extractor, head, x.mul(255.0).round().to(torch.uint8), device=device)
        return torch.softmax(logits, 1)[:, 1].numpy().astype(np.float64)

    return Detector(name, s, predict, history)


def _features_fn(s, extractor: Extractor | None, device) -> Callable[[torch.Tensor], np.ndarray]:
    dev = torch.device(device)
    if s["inputs"] != "stats":
        if extractor is None:
            raise ConfigError(f"detector with inputs '{s['inputs']}' needs extractor '{s['extractor']}'")
        extractor = extractor.to(dev).eval()

    @torch.no_grad()
    def features(x: torch.Tensor) -> np.ndarray:
        parts = []
        if s["inputs"] != "stats":
            e = embed_batches(extractor, x, batch_size=max(len(x), 1), device=dev)
            parts.append(F.normalize(e, dim=1))
        if s["inputs"] != "embedding":
            parts.append(image_statistics(x))
        return torch.cat(parts, 1).numpy().astype(np.float64)

    return features


def _train_features(name, s, images, y, *, seed, device, extractor) -> Detector:
    features = _features_fn(s, extractor, device)
    x = np.concatenate([features(images[k:k + 64].float().div(255.0)) for k in range(0, len(images), 64)])
    if s["model"] == "logistic":
        clf = LogisticRegression(C=float(s["C"]), max_iter=5000, random_state=seed)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1.0 / float(s["C"]), max_iter=2000,
                            random_state=seed)
    model = make_pipeline(StandardScaler(), clf).fit(x, y.astype(int))
    train_acc = float((model.predict(x) == y.astype(int)).mean())

    def predict(batch: torch.Tensor) -> np.ndarray:
        return model.predict_proba(features(batch))[:, 1]

    return Detector(name, s, predict, [{"epoch": 1, "train_acc": train_acc}])


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------
def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float = 0.01) -> float:
    """Highest TPR among ROC points with FPR <= target (a step ROC, no interpolation)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def detection_metrics(scores: np.ndarray, labels: np.ndarray, *, threshold: float = 0.5,
                      max_roc_points: int = 200) -> dict[str, Any]:
    """Precision/recall at ``threshold``, ROC AUC, TPR at 1 % FPR, ROC points (FPR, TPR)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    pred = (scores >= threshold).astype(int)
    out: dict[str, Any] = {
        "n_positive": n_pos, "n_negative": n_neg, "threshold": threshold,
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "fpr_at_threshold": float(pred[labels == 0].mean()) if n_neg else float("nan"),
    }
    if n_pos and n_neg:
        fpr, tpr, _ = roc_curve(labels, scores)
        out["roc_auc"] = float(roc_auc_score(labels, scores))
        out["tpr_at_1pct_fpr"] = tpr_at_fpr(fpr, tpr, 0.01)
        # 1 % FPR is only resolvable with >= 100 negatives; say so in the record.
        out["fpr_resolution"] = 1.0 / n_neg
        if len(fpr) > max_roc_points:
            keep = np.unique(np.r_[0, np.linspace(0, len(fpr) - 1, max_roc_points).round().astype(int),
                                   len(fpr) - 1])
            fpr, tpr = fpr[keep], tpr[keep]
        out["roc"] = {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}
    else:
        out.update(roc_auc=float("nan"), tpr_at_1pct_fpr=float("nan"), fpr_resolution=float("nan"),
                   roc={"fpr": [], "tpr": []})
    return out


def detection_sets(scrape: pd.DataFrame, seen_identities: Sequence[str]) -> tuple[list[str], list[str]]:
    """(positives, negatives) paths from one cloak's scrape table (see the module docstring)."""
    train = scrape[scrape["split"] == "train"]
    seen = set(seen_identities)
    pos = train[train["cloaked"] & (train["role"] == "protected")]
    neg = train[~train["cloaked"] & ~train["identity"].isin(seen) & (train["role"] != "public")]
    if not len(pos):
        raise DataError("detection: the scrape table holds no cloaked protected picture")
    if not len(neg):
        raise DataError("detection: no uncloaked picture of an identity the detector never saw")
    return pos["path"].tolist(), neg["path"].tolist()


def evaluate_detector(detector: Detector, positives: Sequence[str | Path], negatives: Sequence[str | Path],
                      *, reads: list[str] | None = None) -> dict[str, Any]:
    scores = detector.score(list(positives) + list(negatives), reads=reads)
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return detection_metrics(scores, labels)


def detection_record(detector: Detector, *, train_cloak: str, test_cloak: str, metrics: dict[str, Any],
                     settings: dict[str, Any]) -> Record:
    """One record per (detector, train cloak, test cloak)."""
    return Record.make("detection", {"detector": detector.name, "detector_type": detector.settings["type"],
                                     "train_cloak": train_cloak, "test_cloak": test_cloak,
                                     "cross_cloak": train_cloak != test_cloak},
                       settings={**settings, "detector": detector.settings, "n_train": detector.n_train,
                                 "train_seconds": detector.train_seconds, "history": detector.history},
                       metrics=metrics)


def run_detect(*, manifest: str | Path, roles: str | Path, images: str | Path, shards: Sequence[str | Path],
               scrapes: Sequence[str | Path], out: str | Path, detector: str, settings: dict[str, Any],
               train_cloak: str, test_cloaks: Sequence[str], extractor_spec: dict[str, Any],
               checkpoints: dict[str, str], seed: int, device: str) -> list[Record]:
    """Rule ``detect``: train detector ``detector`` on ``train_cloak``'s public pairs (``shards``),
    test it on each of ``test_cloaks``' scrape tables (``scrapes``, same order) -> ``out``.

    ``images``: the dataset's ``images`` folder; ``extractor_spec``: the spec of the extractor the
    detector needs (:func:`needs_extractor`), if any; ``checkpoints``: {extractor name: file} of
    those trained in the pipeline (other keys are ignored).
    """
    device = resolve_device(device)
    # Training pairs: exactly the robust trainer's data (public identities only).
    pairs = robust_training_pairs(pd.read_parquet(manifest), pd.read_parquet(roles), Path(images).parent,
                                  {train_cloak: collect_shards(list(shards))})
    seen = sorted({y for _, y in pairs.clean})
    extractor = None
    name = needs_extractor(settings)
    if name:
        extractor = build_extractor(name, extractor_spec, checkpoint=checkpoints.get(name), device=device)
    det = train_detector(detector, settings, [c for c, _ in pairs.clean], [c for c, _ in pairs.cloaked],
                         seed=seed, device=device, extractor=extractor)
    records = []
    for cloak, table in zip(test_cloaks, scrapes, strict=True):
        pos, neg = detection_sets(pd.read_parquet(table), seen)
        metrics = evaluate_detector(det, pos, neg)
        records.append(detection_record(det, train_cloak=train_cloak, test_cloak=cloak, metrics=metrics,
                                        settings={"seed": seed, "public_identities": len(seen)}))
        log.info("%s: precision %.3f, recall %.3f, AUC %.3f, TPR@1%%FPR %.3f", records[-1].experiment,
                 metrics["precision"], metrics["recall"], metrics["roc_auc"], metrics["tpr_at_1pct_fpr"])
    write_records(records, out)
    return records
