"""Fixtures shared by the whole suite (tests/unit: the package, no Snakemake; tests/workflow:
everything that runs or reads the workflow). Plain helpers live in modules beside this file
(repo_paths, cloaks_testlib, adaptive_testlib, smk_helpers, ...), imported normally."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # the helper modules, whatever pytest's import mode
from repo_paths import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pictures import smooth_image  # noqa: E402


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tiny models (cloaks, trainers), then the setting restored.
    Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.

    Their operations are too small to gain from a second thread, and with other jobs on the
    machine's two cores two threads mostly wait on each other (measured: the Fawkes v0.3 tests
    took 19 s on two threads, 4.5 s on one; a tiny trainer's step 0.04 s on one, 1-4 s on two).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """The README's two plugin files ("Adding an extractor/a cloak") in a folder on sys.path;
    registrations undone afterwards."""
    from cloakbench.cloaks import CLOAKS
    from cloakbench.extractors import EXTRACTORS
    from cloakbench.registry import PLUGINS_ENV
    from readme_plugins import readme_blocks

    files = readme_blocks("python", "file")
    assert set(files) == {"toy_extractor.py", "toy_cloak.py"}, sorted(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PLUGINS_ENV, "")  # restored afterwards, whatever validation sets
    yield tmp_path
    for module in ("toy_extractor", "toy_cloak"):
        sys.modules.pop(module, None)
    EXTRACTORS.unregister("toy_extractor")
    CLOAKS.unregister("toy_cloak")


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
