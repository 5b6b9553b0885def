"""Fawkes v0.3 (July 2020): the targeted cloak of the USENIX Security 2020 paper.

Paper: S. Shan, E. Wenger, J. Zhang, H. Li, H. Zheng, B. Y. Zhao, "Fawkes: Protecting
Privacy against Unauthorized Deep Learning Models", USENIX Security 2020. Software:
github.com/Shawn-Shan/fawkes, release v0.3 (TensorFlow 1, Python < 3.8). This module
reimplements its algorithm in torch against any ensemble of our extractors; nothing
of the original code is used.

Threat model: the user cloaks the pictures they post; a tracker later scrapes them and
trains a face classifier on top of a feature extractor. The user knows some extractors
(the ensemble) and pushes each picture's features toward another identity's region,
so the classifier learns the wrong region for the user and misses their clean photos.
It is a data-poisoning defence, evaluated by training on cloaked pictures.

Algorithm (the defaults follow the v0.3 release, github.com/Shawn-Shan/fawkes tag v0.3,
fawkes/protection.py, utils.py ``select_target_label``, differentiator.py; the exceptions
are listed below):
1. Target identity (``prepare``): drawn from a target pool that is not a class of the
   tracker's model (v0.3 shipped its own external target set; here ``users.target_pool``
   reserves identities, role ``target_pool``, which scrape and every trainer leave out).
   For every pool identity, the minimum L2 distance between its features and the user's
   pictures' features; the identities are ranked farthest first and one of the
   ``n_farthest`` (20) farthest is drawn at random (seeded by the cloak's seed and the
   user's name). One target per user, as v0.3's command line (``--separate_target`` off).
2. Target point per picture and model: ``t = f(x) + 2 * (f(t_img) - f(x))``, where
   ``t_img`` is one picture of the target identity drawn at random for each cloaked
   picture (v0.3 sampled one of the target's pictures per source picture and optimised
   with batch size 1, so its "centre" of f(x) was f(x) itself). The draw is seeded by
   the cloak's seed and the picture's pixels, so a picture gets the same target picture
   in any batch or shard.
3. Minimise, with Adadelta over a tanh parametrisation of the cloaked picture x',
   ``penalty * max(DSSIM(x, x') - rho, 0)^2 + sum_models ||f(x') - t|| / ||t||``,
   penalty 1e6, DSSIM = (1 - SSIM) / 2 (Gaussian window 11, sigma 1.5), at 224x224
   (``resolution: 224``: v0.3 resized every face crop to 224x224 and optimised and
   measured DSSIM there; our 112 crop is upsampled bilinearly, cloaked, and downsampled
   back with antialiasing; the perturb stage records the DSSIM of the published crop).
   The learning rate is multiplied by 0.8 every ``steps // 3`` steps, and the picture
   returned is the step with the smallest feature term (``keep_final=False``).

Budget: DSSIM <= rho, enforced only softly by the quadratic penalty (a picture can end a
little above rho: the original never checked it). No L-inf bound.

Modes (rho, steps, lr): min (0.002, 20, 40), low (0.003, 50, 35), mid (0.005, 200, 20),
high (0.008, 500, 10, the default here), ultra (0.01, 1000, 8), as v0.3's ``mode2param``.
Each value can be overridden; the record lists what was (``overridden``).

Options that deviate from v0.3 (each recorded in ``overridden`` when set):
- ``target_point: centroid``: f(t_img) replaced by the mean of the target's pictures'
  features; ``source_center: user``: f(x) in the shift replaced by the user's centroid
  (t = f(x) + 2 (mean f(target) - mean f(user))). These were this module's earlier defaults.
- ``resolution: null``: optimise the 112x112 crop itself (DSSIM measured on what is
  published) instead of 224x224.
- ``candidate_role: public`` (or ``other``): draw the target among identities that are
  classes of the tracker's model (the study's public identities), not a reserved pool.

Differences that remain with every setting:
- Candidate features. v0.3 compared raw concatenated features of the user's pictures
  against one precomputed embedding per identity of its target set; we embed at most
  ``candidate_pictures`` (10, as the 10 pictures v0.3 fetched of its chosen target)
  training pictures per pool identity and compare per-model L2-normalised features
  (centroid of the normalised features per identity), because our ensembles mix models
  whose embedding scales are unrelated.
- v0.3 drew the target among the 20 farthest and each target picture with Python's
  unseeded ``random``; here both draws are seeded. v0.3 sampled target pictures without
  replacement (cycling the list when the user had more pictures); here each picture
  draws independently.
- Inputs are [0, 1] RGB; each extractor does its own resizing and normalisation (v0.3
  fed ImageNet-normalised BGR to its Keras models).
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F

from .base import CUDA_GRAPH, FROM_MODE, Cloak, Param, picture_keys
from .metrics import dssim
from .optim import adadelta_update, from_tanh_space, to_tanh_space
from .registry import register_cloak

MODES: dict[str, dict[str, Any]] = {
    "min": {"rho": 0.002, "steps": 20, "lr": 40.0},
    "low": {"rho": 0.003, "steps": 50, "lr": 35.0},
    "mid": {"rho": 0.005, "steps": 200, "lr": 20.0},
    "high": {"rho": 0.008, "steps": 500, "lr": 10.0},
    "ultra": {"rho": 0.01, "steps": 1000, "lr": 8.0},
}

# v0.3's modifier starts at this constant in tanh space (deterministic: no noise).
INIT_MODIFIER = 1e-6
# Offset of the per-picture draw of the target picture (distinct from the target draw's).
TARGET_PICTURE_OFFSET = 7_919


@register_cloak
class FawkesV03(Cloak):
    """Fawkes v0.3: targeted feature-space cloak with a DSSIM budget (see module docstring).

    Parameters: see ``params`` (``rho``, ``steps``, ``lr`` left out or ``null`` come from
    ``mode``). Needs ``prepare(context)`` once per protected user before cloaking; see
    :meth:`prepare` and :func:`cloakbench.cloaks.context.build_target_context`.
    After a call, ``history`` holds per-step batch means of ``loss``, ``feature``
    and ``dssim`` (entry i = the picture after i updates).
    """

    type_name: ClassVar[str] = "fawkes_v03"
    needs_reference: ClassVar[bool] = True
    modes = MODES
    params = (
        Param("mode", str, "high", choices=tuple(MODES), deviation=False,
              doc="preset of rho, steps and lr"),
        Param("rho", float, FROM_MODE, gt=0, lt=1, doc="DSSIM budget"),
        Param("steps", int, FROM_MODE, ge=1, doc="optimisation steps"),
        Param("lr", float, FROM_MODE, gt=0, doc="Adadelta learning rate"),
        Param("penalty", float, 1e6, ge=0, doc="weight of the squared DSSIM excess"),
        Param("n_farthest", int, 20, ge=1,
              doc="the target is drawn among this many farthest candidates"),
        Param("overshoot", float, 2.0, gt=0, doc="factor of the shift in the target point"),
        Param("target_point", str, "picture", choices=("picture", "centroid"),
              doc="f(target) of the target point: one seeded random picture of the target "
                  "identity per cloaked picture (as v0.3), or the target's centroid"),
        Param("source_center", str, "image", choices=("image", "user"),
              doc="f(x) of the target point: the picture's own features (as v0.3, which "
                  "cloaked one picture at a time), or the user's centroid"),
        Param("lr_decay", float, 0.8, gt=0, le=1,
              doc="learning-rate factor applied every steps // 3 steps"),
        Param("resolution", int, 224, ge=32, nullable=True,
              doc="optimise and measure DSSIM at this square size (224 as v0.3); null = "
                  "the crop's own size"),
        Param("adadelta_rho", float, 0.95, ge=0, lt=1,
              doc="TensorFlow 1's Adadelta rho (torch's 0.9 would change the step sizes)"),
        Param("adadelta_eps", float, 1e-8, gt=0, doc="TensorFlow 1's Adadelta epsilon"),
        Param("keep_best", bool, True,
              doc="return the step with the smallest feature term (as v0.3), else the last"),
        Param("candidate_role", str, "target_pool", check=lambda v: v != "",
              accepted="a role name (target_pool, public, other)",
              doc="with the perturb stage's context, the target is drawn among this role "
                  "(target_pool: users.target_pool, never a class, as v0.3's own target set)"),
        Param("candidate_pictures", int, 10, ge=1,
              doc="training pictures embedded per candidate (v0.3 fetched 10 of its target)"),
        CUDA_GRAPH,
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._candidate_cache: dict[Any, Any] = {}
        # Set by prepare():
        self.user: str | None = None
        self.target_identity: str | None = None
        self.target_ranking: list[tuple[str, float]] = []
        self._target_centroid: dict[str, torch.Tensor] = {}
        self._target_features: dict[str, torch.Tensor] = {}
        #: After a call: the index (among the target's pictures) used for each picture.
        self.target_pictures: list[int] = []
        self._user_centroid: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ setup
    def prepare(self, context: Mapping[str, Any]) -> None:
        """Choose the target identity for one protected user.

        ``context`` holds, for the ensemble's extractors (keyed by ``Extractor.name``):

        - ``user_features``: ``{name: tensor N_user x D}``, raw (un-normalised) embeddings
          of the user's clean pictures (those to be cloaked);
        - ``candidate_features``: ``{identity: {name: tensor N_i x D}}`` for the candidate
          target identities (the study's public identities);
        - ``user`` (or ``identity``, optional): the user's identity name; it seeds the draw
          among the farthest candidates (so users get independent draws) and is never a
          candidate.

        Instead of the features, ``user_images`` (Nx3xHxW in [0, 1]) and
        ``candidate_images`` (``{identity: tensor or list of 3xHxW}``) may be given, or
        the perturb stage's tables (``identity``, ``user_paths``, ``manifest``, ``roles``,
        ``dataset_dir``: candidates are the ``candidate_role`` identities, at most
        ``candidate_pictures`` training pictures each): they are embedded with the
        ensemble. See :mod:`cloakbench.cloaks.context`.
        """
        from .context import build_target_context, context_from_dataset

        ctx = dict(context)
        if "user" not in ctx and "identity" in ctx:
            ctx["user"] = ctx["identity"]
        if "user_features" not in ctx:
            if "user_images" in ctx and "candidate_images" in ctx:
                ctx.update(build_target_context(self.extractors, ctx["user_images"],
                                                ctx["candidate_images"], device=self.device,
                                                user=ctx.get("user")))
            elif all(k in ctx for k in ("user_paths", "manifest", "roles", "dataset_dir")):
                ctx.update(context_from_dataset(
                    self.extractors, identity=ctx["user"], user_paths=ctx["user_paths"],
                    manifest=ctx["manifest"], roles=ctx["roles"], dataset_dir=ctx["dataset_dir"],
                    candidate_role=self.candidate_role, max_pictures=self.candidate_pictures,
                    device=self.device, cache=self._candidate_cache))
            else:
                raise ValueError(
                    "fawkes_v03.prepare: context needs 'user_features' and 'candidate_features', "
                    "or 'user_images' and 'candidate_images', or the perturb stage's 'identity', "
                    "'user_paths', 'manifest', 'roles' and 'dataset_dir'; see "
                    "cloakbench.cloaks.context")
        user_feats: Mapping[str, torch.Tensor] = ctx["user_features"]
        candidates: Mapping[str, Mapping[str, torch.Tensor]] = ctx.get("candidate_features") or {}
        user = ctx.get("user")
        names = [ex.name for ex in self.extractors]
        missing = [n for n in names if n not in user_feats]
        if missing:
            raise ValueError(f"fawkes_v03.prepare: user_features lacks extractor(s) {missing}; "
                             f"the ensemble is {names}")
        cand_ids = sorted(str(k) for k in candidates if k != user)
        if not cand_ids:
            raise ValueError("fawkes_v03.prepare: no candidate target identities "
                             "(candidate_features is empty or holds only the user)")
        for ident in cand_ids:
            lacking = [n for n in names if n not in candidates[ident]]
            if lacking:
                raise ValueError(f"fawkes_v03.prepare: candidate '{ident}' lacks features of "
                                 f"extractor(s) {lacking}")
            if any(candidates[ident][n].shape[0] == 0 for n in names):
                raise ValueError(f"fawkes_v03.prepare: candidate '{ident}' has no pictures")
        if any(user_feats[n].shape[0] == 0 for n in names):
            raise ValueError("fawkes_v03.prepare: user_features holds no pictures")

        # Selection space: per-model L2-normalised features, concatenated over the ensemble.
        u = torch.cat([F.normalize(user_feats[n].detach().double().cpu(), dim=1) for n in names], 1)
        c = torch.stack([
            torch.cat([F.normalize(candidates[i][n].detach().double().cpu(), dim=1).mean(0)
                       for n in names]) for i in cand_ids])
        min_dist = torch.cdist(u, c).min(dim=0).values.tolist()
        order = sorted(range(len(cand_ids)), key=lambda j: (-min_dist[j], cand_ids[j]))
        k = min(self.n_farthest, len(cand_ids))
        offset = zlib.crc32(str(user).encode()) if user is not None else 0
        pick = int(torch.randint(k, (1,), generator=self.generator(offset)))
        target = cand_ids[order[pick]]

        self.user = user
        self.target_identity = target
        self.target_ranking = [(cand_ids[j], float(min_dist[j])) for j in order[:k]]
        self._target_features = {n: candidates[target][n].detach().float().to(self.device)
                                 for n in names}
        self._target_centroid = {n: f.mean(0) for n, f in self._target_features.items()}
        self._user_centroid = {n: user_feats[n].detach().float().mean(0).to(self.device)
                               for n in names}

    # ------------------------------------------------------------------ attack
    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        if self.target_identity is None:
            raise RuntimeError("fawkes_v03: call prepare(context) for the protected user before "
                               "cloaking (the target identity is chosen there)")
        size = tuple(x.shape[-2:])
        target_feats = self._target_point_features(x)
        if self.resolution is not None and size != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False)

        with torch.no_grad():
            targets, scales = [], []
            for ex in self.extractors:
                f = ex(x).float()
                center = self._user_centroid[ex.name] if self.source_center == "user" else f
                t = f + self.overshoot * (target_feats[ex.name] - center)
                targets.append(t)
                scales.append(t.norm(dim=1))

        w0 = to_tanh_space(x)
        b = x.shape[0]
        modifier = torch.full_like(x, INIT_MODIFIER).requires_grad_(True)
        square_avg, acc_delta = torch.zeros_like(x), torch.zeros_like(x)
        lr = torch.tensor(self.lr, device=self.device)  # a tensor: the graph sees its decays
        best = x.clone()
        best_feat = torch.full((b,), float("inf"), device=self.device)
        hist = self.new_history(self.steps + 1, "loss", "feature", "dssim")

        def evaluate(track: bool) -> tuple[torch.Tensor, torch.Tensor]:
            adv = from_tanh_space(w0 + modifier)
            dist = dssim(adv, x)
            feat = sum((ex(adv).float() - t).norm(dim=1) / s
                       for ex, t, s in zip(self.extractors, targets, scales))
            loss = self.penalty * torch.clamp(dist - self.rho, min=0.0) ** 2 + feat
            hist.add(loss=loss, feature=feat, dssim=dist)
            if track:  # v0.3 judged the pictures after each update, keeping the closest
                with torch.no_grad():
                    f = feat.detach()
                    better = (f < best_feat) & (f > 0)
                    best.copy_(torch.where(better[:, None, None, None], adv.detach(), best))
                    best_feat.copy_(torch.where(better, f, best_feat))
            return loss, adv

        def step(track: bool) -> None:
            loss, _ = evaluate(track)
            (grad,) = torch.autograd.grad(loss.sum(), modifier)
            adadelta_update(modifier, grad, square_avg, acc_delta, lr, self.adadelta_rho,
                            self.adadelta_eps)
            hist.advance()

        # v0.3 multiplies the rate by lr_decay after step i when i != 0 and i % (steps // 3)
        # == 0 (0-based); with fewer than 3 steps it would divide by zero: no decay here.
        decay_every = self.steps // 3
        step(False)  # the starting picture is never a candidate
        runner = self.step_runner(lambda: step(True))
        for i in range(1, self.steps):
            if decay_every and (i - 1) != 0 and (i - 1) % decay_every == 0:
                lr.mul_(self.lr_decay)
            runner()
        with torch.no_grad():
            _, adv = evaluate(True)  # the picture after the last update
        hist.advance()

        result = best if self.keep_best else adv.detach()
        if tuple(result.shape[-2:]) != size:
            result = F.interpolate(result, size=size, mode="bilinear", align_corners=False,
                                   antialias=True)
        return result  # the template clamps to [0, 1]

    def _target_point_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """f(target) per picture (B x D per model): the centroid, or with ``target_point:
        picture`` the features of one picture of the target identity drawn per cloaked
        picture from ``seed + offset + key(picture)`` (same draw in any batch or shard)."""
        b = x.shape[0]
        if self.target_point == "centroid":
            self.target_pictures = []
            return {n: c.expand(b, -1) for n, c in self._target_centroid.items()}
        n_pics = next(iter(self._target_features.values())).shape[0]
        idx = [int(torch.randint(n_pics, (1,), generator=self.generator(TARGET_PICTURE_OFFSET + k)))
               for k in picture_keys(x)]
        self.target_pictures = idx
        sel = torch.tensor(idx, device=self.device)
        return {n: f.index_select(0, sel) for n, f in self._target_features.items()}

    def record_extras(self) -> dict[str, Any]:
        return {"optimizer": "adadelta", "execution": self.execution,
                "budget": "dssim (soft penalty)"}
