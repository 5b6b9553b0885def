"""scrape: the training set a recogniser's trainer collects, and the test set.

Training set: every non-protected identity's clean training pictures, plus each
protected user's training pictures, of which ``protected_fraction`` are replaced by their
cloaked versions (seeded choice). Optional platform transforms (JPEG re-encoding,
resize down and up) apply to every scraped training picture, as a photo platform would.
Test set: everyone's clean test pictures (protected users' *unperturbed* future photos).
Identities of role ``target_pool`` (Fawkes v0.3's external targets) are in neither set: they
are never a class of the tracker's model.

Pictures that differ from the clean dataset picture are written under ``images_dir``
and listed with ``imageset = scraped-<cloak>``; the others point at the ``clean`` set, so
no (extractor, picture) pair is embedded twice.

Protocols (``scrape.protocol``). The table always lists every protected user's cloaked
pictures; the protocol says how ``evaluate`` (and the end-to-end classifier) use it:

* ``per_user`` (default, FaceCure's: "one FaceScrub user is chosen as the attacker"): one
  training set per protected user u, in which only u's pictures are cloaked and every other
  identity, the other protected users included, is uncloaked. The columns ``clean_imageset``
  and ``clean_path`` give each row's *uncloaked* version (the ``clean`` set, or, with platform
  transforms, the re-encoded uncloaked picture: image set ``scraped-none``, the baseline's, and a
  copy under ``images_dir/uncloaked/`` for the end-to-end classifier), so the per-user sets are
  assembled from embeddings computed once. The table itself is the same under both protocols.
* ``joint`` (cloakbench's earlier protocol): one training set with every protected user cloaked.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..io import read_rgb, write_parquet, write_png

log = logging.getLogger(__name__)

SCRAPE_COLUMNS = ["image_id", "identity", "role", "split", "cloaked", "imageset", "path",
                  "clean_imageset", "clean_path"]
PROTOCOLS = ("per_user", "joint")


def platform_transform(rgb: np.ndarray, *, jpeg_quality: int | None, resize: int | None) -> np.ndarray:
    out = rgb
    if resize:
        h, w = out.shape[:2]
        im = Image.fromarray(out).resize((resize, resize), Image.BICUBIC).resize((w, h), Image.BICUBIC)
        out = np.asarray(im)
    if jpeg_quality:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out


def collect_shards(shard_dirs: list[str | Path]) -> pd.DataFrame:
    """Concatenate the ``figures.parquet`` tables of perturb's shard folders, with absolute picture paths."""
    parts = []
    for d in shard_dirs:
        f = pd.read_parquet(Path(d) / "figures.parquet")
        f["path"] = [str(Path(d) / p) for p in f["path"]]
        parts.append(f)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["image_id", "path"])


def scrape(manifest: pd.DataFrame, roles: pd.DataFrame, dataset_dir: str | Path,
           cloaked: pd.DataFrame | None, out_table: str | Path, images_dir: str | Path, *,
           cloak: str, protected_fraction: float = 1.0, jpeg_quality: int | None = None,
           resize: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Build and write the scrape table. ``cloaked`` has columns image_id, path (absolute
    paths of the cloaked protected training pictures), or is None for the no-cloak baseline.
    The table does not depend on ``scrape.protocol`` (see the module docstring)."""
    dataset_dir, images_dir = Path(dataset_dir), Path(images_dir)
    df = manifest.merge(roles, on="identity", how="left", validate="many_to_one")
    df = df[df["role"] != "target_pool"].copy()  # v0.3's target pool is never a class
    df["cloaked"] = False
    df["imageset"] = "clean"
    df["path"] = [str(dataset_dir / p) for p in df["path"]]
    df["clean_path"] = df["path"]
    cloaked_paths = dict(zip(cloaked["image_id"], cloaked["path"])) if cloaked is not None else {}

    # Which protected training pictures are cloaked: a seeded share per user.
    prot_train = df[(df["role"] == "protected") & (df["split"] == "train")]
    for k, (ident, group) in enumerate(sorted(prot_train.groupby("identity"), key=lambda g: g[0])):
        if cloak == "none":
            break
        n = int(round(protected_fraction * len(group)))
        rng = np.random.default_rng([seed, 2, k])
        chosen = group.index[np.sort(rng.permutation(len(group))[:n])]
        missing = [i for i in df.loc[chosen, "image_id"] if i not in cloaked_paths]
        if missing:
            raise FileNotFoundError(f"scrape[{cloak}]: no cloaked picture for {missing[:3]} "
                                    f"(+{max(len(missing) - 3, 0)} more); did perturb finish?")
        df.loc[chosen, "cloaked"] = True
        df.loc[chosen, "path"] = [cloaked_paths[i] for i in df.loc[chosen, "image_id"]]

    transform = bool(jpeg_quality or resize)
    train = df["split"] == "train"
    emit = train & (df["cloaked"] | transform)
    # each row's uncloaked version (what the row is in another protected user's per-user set)
    df["clean_imageset"] = np.where(train & transform, "scraped-none", "clean")
    for idx in df.index[emit]:
        if transform and df.at[idx, "cloaked"]:
            # the re-encoded uncloaked picture, identical to the baseline scrape's (same
            # deterministic transform of the same dataset picture)
            clean_rgb = platform_transform(read_rgb(df.at[idx, "clean_path"]), jpeg_quality=jpeg_quality,
                                           resize=resize)
            dest = images_dir / "uncloaked" / f"{df.at[idx, 'image_id']}.png"
            write_png(clean_rgb, dest)
            df.at[idx, "clean_path"] = str(dest)
        rgb = read_rgb(df.at[idx, "path"])
        if transform:
            rgb = platform_transform(rgb, jpeg_quality=jpeg_quality, resize=resize)
        dest = images_dir / f"{df.at[idx, 'image_id']}.png"
        write_png(rgb, dest)
        df.at[idx, "path"] = str(dest)
        df.at[idx, "imageset"] = f"scraped-{cloak}"
    uncloaked = ~df["cloaked"]
    df.loc[uncloaked, "clean_imageset"] = df.loc[uncloaked, "imageset"]
    df.loc[uncloaked, "clean_path"] = df.loc[uncloaked, "path"]
    out = df[SCRAPE_COLUMNS].sort_values("image_id").reset_index(drop=True)
    write_parquet(out, out_table)
    log.info("scrape[%s]: %d train pictures (%d cloaked, %d re-encoded), %d test pictures",
             cloak, int(train.sum()), int(df["cloaked"].sum()), int(emit.sum()), int((~train).sum()))
    return out


def run_scrape(*, manifest: str | Path, roles: str | Path, images: str | Path, shards: Sequence[str | Path],
               table: str | Path, images_out: str | Path, cloak: str, scrape_cfg: dict[str, Any],
               seed: int) -> pd.DataFrame:
    """Rule ``scrape``: the scraped set of ``cloak`` (``none``: no shards, the baseline) -> ``table``
    and ``images_out``; ``images``: the dataset's ``images`` folder."""
    Path(images_out).mkdir(parents=True, exist_ok=True)
    cloaked = collect_shards(list(shards)) if cloak != "none" else None
    return scrape(pd.read_parquet(manifest), pd.read_parquet(roles), Path(images).parent, cloaked, table,
                  images_out, cloak=cloak, protected_fraction=scrape_cfg["protected_fraction"],
                  jpeg_quality=scrape_cfg["jpeg_quality"], resize=scrape_cfg["resize"], seed=seed)
