"""The embed and perturb rules' entry points (cloakbench.embed.run_embed, cloakbench.perturb.run_perturb)
on a tiny pre-aligned dataset with a tiny registered extractor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_testlib import TinyTrainable, make_dataset
from cloakbench.embed import run_embed
from cloakbench.io import stack_embeddings as stack
from cloakbench.io import write_parquet
from cloakbench.perturb import run_perturb

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = {"type": TinyTrainable.type_name}


def test_run_embed_clean_and_scraped_sets(tmp_path):
    manifest, _, dataset_dir = make_dataset(tmp_path, n_identities=3, pictures=4, n_train=3)
    out = tmp_path / "clean.parquet"
    run_embed(name="tiny", spec=SPEC, checkpoint=None, table=dataset_dir / "manifest.parquet",
              images=dataset_dir / "images", imageset="clean", out=out, batch_size=5, device="cpu")
    emb = pd.read_parquet(out)
    assert emb["image_id"].tolist() == manifest["image_id"].tolist() and stack(emb).shape == (12, 16)
    # a scraped set: only the scrape table's rows of that image set
    scrape = manifest.assign(imageset=["scraped-c" if i % 3 == 0 else "clean" for i in range(12)],
                             path=[str(dataset_dir / p) for p in manifest["path"]])
    scrape.to_parquet(tmp_path / "scrape.parquet")
    run_embed(name="tiny", spec=SPEC, checkpoint=None, table=tmp_path / "scrape.parquet",
              images=tmp_path / "unused", imageset="scraped-c", out=tmp_path / "s.parquet", batch_size=5,
              device="cpu")
    part = pd.read_parquet(tmp_path / "s.parquet")
    assert part["image_id"].tolist() == manifest["image_id"].tolist()[::3]
    np.testing.assert_allclose(stack(part), stack(emb)[::3], atol=1e-6)


def test_run_perturb_one_shard(tmp_path):
    roles = {f"id_{i}": "protected" if i < 2 else "other" for i in range(3)}
    manifest, role_df, dataset_dir = make_dataset(tmp_path, n_identities=3, pictures=4, n_train=3, roles=roles)
    write_parquet(role_df, tmp_path / "roles.parquet")
    kw = dict(manifest=dataset_dir / "manifest.parquet", roles=tmp_path / "roles.parquet",
              images=dataset_dir / "images", checkpoints={"manifest": "ignored"}, subset="protected", shards=2,
              cloak="pgd", cloak_spec={"type": "pgd", "ensemble": ["tiny"], "params": {"eps": 0.03, "steps": 2,
                                                                                    "step_size": 0.01}},
              extractors={"tiny": SPEC}, seed=0, batch_size=2, device="cpu")
    figs = run_perturb(shard=0, out_dir=tmp_path / "shard-0", **kw)
    again = run_perturb(shard=0, out_dir=tmp_path / "again", **kw)
    # 2 protected users x 3 training pictures, first half of them in shard 0
    assert len(figs) == 3 and set(figs["identity"]) <= {"id_0", "id_1"}
    assert (figs["linf"] <= 0.03 + 1 / 255).all() and (figs["linf"] > 0).all() and "shift_tiny" in figs
    assert again.drop(columns="seconds").equals(figs.drop(columns="seconds"))  # deterministic for a seed
    for rel in figs["path"]:
        assert (tmp_path / "shard-0" / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes()
