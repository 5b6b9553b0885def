"""Reference data for cloaks that need more than the pictures (Fawkes v0.3's target choice).

The perturb stage calls :func:`build_target_context` once per protected user, with the
user's clean pictures and the candidate identities' pictures, and hands the result to
``cloak.prepare(context)``. Only embeddings are kept, so the context is small and can
be built from any source: from pictures here, or from embeddings computed elsewhere,
as long as the dict has the same shape::

    {
        "user": "Alice_Smith",                       # optional, seeds the target draw
        "user_features": {"sface": Tensor[N_user, D], ...},
        "candidate_features": {"Bob_Jones": {"sface": Tensor[N_bob, D], ...}, ...},
    }

Features are raw extractor outputs (not normalised), keyed by ``Extractor.name``.

From the pipeline's tables, :func:`context_from_dataset` does the same: the user's
pictures are the paths the perturb stage lists, the candidates are the identities of a
role (``public`` by default), at most ``max_pictures`` training pictures each (v0.3
fetched 10 pictures of its chosen target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

import pandas as pd
import torch

from ..errors import DataError
from ..extractors.base import Extractor
from ..extractors.embedding import embed_batches
from ..images import load_batch


def _as_batch(images: torch.Tensor | Sequence[torch.Tensor], what: str) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        batch = images if images.dim() == 4 else images.unsqueeze(0)
    else:
        items = list(images)
        if not items:
            raise ValueError(f"build_target_context: {what} has no pictures")
        batch = torch.stack([im if im.dim() == 3 else im.squeeze(0) for im in items])
    if batch.dim() != 4 or batch.shape[1] != 3 or batch.shape[0] == 0:
        raise ValueError(f"build_target_context: {what} must be Nx3xHxW pictures (N >= 1), "
                         f"got shape {tuple(batch.shape)}")
    return batch


def embed(extractors: Sequence[Extractor], images: torch.Tensor, *, batch_size: int = 64,
          device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Raw embeddings ``{extractor name: N x D}`` (on CPU) of pictures in [0, 1]."""
    return {ex.name: embed_batches(ex, images, batch_size=batch_size, device=device)
            for ex in extractors}


def build_target_context(extractors: Sequence[Extractor],
                         user_images: torch.Tensor | Sequence[torch.Tensor],
                         candidate_images: Mapping[str, torch.Tensor | Sequence[torch.Tensor]],
                         *, user: str | None = None, batch_size: int = 64,
                         device: str | torch.device = "cpu") -> dict[str, Any]:
    """Embed a protected user's pictures and the candidate identities' pictures.

    ``extractors``: the cloak's ensemble (``cloak.extractors``). ``user_images``: the
    user's clean pictures (Nx3xHxW tensor or list of 3xHxW, in [0, 1]).
    ``candidate_images``: ``{identity: pictures}`` for the identities the target is
    drawn from (in the study: the public identities; the user is skipped if present).
    Returns the dict that ``FawkesV03.prepare`` takes (see the module docstring).
    """
    if not candidate_images:
        raise ValueError("build_target_context: candidate_images is empty")
    users = embed(extractors, _as_batch(user_images, "user_images"), batch_size=batch_size,
                  device=device)
    candidates = {
        str(ident): embed(extractors, _as_batch(pics, f"candidate '{ident}'"),
                          batch_size=batch_size, device=device)
        for ident, pics in sorted(candidate_images.items(), key=lambda kv: str(kv[0]))
        if user is None or str(ident) != user
    }
    return {"user": user, "user_features": users, "candidate_features": candidates}


def context_from_dataset(extractors: Sequence[Extractor], *, identity: str,
                         user_paths: Sequence[str | Path], manifest: pd.DataFrame,
                         roles: pd.DataFrame, dataset_dir: str | Path,
                         candidate_role: str = "public", max_pictures: int = 10,
                         batch_size: int = 64, device: str | torch.device = "cpu",
                         cache: MutableMapping[Any, Any] | None = None) -> dict[str, Any]:
    """Build the target context for user ``identity`` from the pipeline's tables.

    ``user_paths``: the user's clean pictures (all of them in the subset being cloaked, so
    every shard draws the same target). Candidates: identities whose role in ``roles`` is
    ``candidate_role``, minus the user; for each, the first ``max_pictures`` of its
    training pictures (by image id) under ``dataset_dir``. ``cache``: a dict kept across
    users (e.g. on the cloak) so the candidates are embedded once per shard, not per user.
    """
    dataset_dir = Path(dataset_dir)
    names = sorted(roles.loc[roles["role"] == candidate_role, "identity"].astype(str))
    if not names:
        raise DataError(f"no identity has role '{candidate_role}' in the roles table: Fawkes v0.3 "
                        "draws its target among them. Reserve a target pool (users.target_pool) "
                        "for role target_pool, set users.public_fraction > 0 for role public, "
                        "or set the cloak's candidate_role to another role")
    key = (str(dataset_dir), candidate_role, max_pictures, tuple(names),
           tuple(ex.name for ex in extractors))
    candidates = cache.get(key) if cache is not None else None
    if candidates is None:
        rows = manifest[manifest["identity"].astype(str).isin(names)
                        & (manifest["split"] == "train")].sort_values("image_id")
        candidates = {}
        for ident, group in rows.groupby("identity", sort=True):
            paths = [dataset_dir / p for p in group["path"].head(max_pictures)]
            candidates[str(ident)] = embed(extractors, load_batch(paths), batch_size=batch_size,
                                           device=device)
        if cache is not None:
            cache[key] = candidates
    if not user_paths:
        raise DataError(f"no pictures of user '{identity}' to choose a target for")
    user = embed(extractors, load_batch(list(user_paths)), batch_size=batch_size, device=device)
    return {"user": str(identity), "user_features": user,
            "candidate_features": {k: v for k, v in candidates.items() if k != str(identity)}}
