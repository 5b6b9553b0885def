import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def smooth_image(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """A smooth random RGB picture (low-frequency colour blobs), uint8 HxWx3."""
    small = rng.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)
    from PIL import Image
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


@pytest.fixture
def folder_dataset(tmp_path):
    """A pre-aligned folder-per-identity dataset: 5 identities x 6 pictures, plus bad files."""
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for i in range(5):
        base = smooth_image(rng)
        d = root / f"person_{i}"
        d.mkdir(parents=True)
        for k in range(6):
            noise = rng.normal(0, 8, base.shape)
            Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(d / f"{k}.jpg")
    (root / "person_0" / "broken.jpg").write_bytes(b"not an image")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "person_1" / "tiny.png")
    d = root / "person_sparse"
    d.mkdir()
    for k in range(2):
        Image.fromarray(smooth_image(rng)).save(d / f"{k}.png")
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny config (config/test.yaml) run once end to end, locally on 2 cores, in a
    temporary working directory shared by every workflow test of the session (test_e2e,
    test_slurm, test_dvc, test_incremental, test_killed_job). Read it, never write to it:
    copy it first with ``smk_helpers.copy_workdir``."""
    from smk_helpers import run_snakemake

    work = tmp_path_factory.mktemp("e2e")
    run_snakemake(work)
    return work
