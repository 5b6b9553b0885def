"""CUDA-graph execution of the cloak steps (skipped without a GPU).

On CUDA each optimisation step is captured once and replayed (``cloaks.optim.StepRunner``).
These checks run only where a GPU is present; on the project's GPU machine they passed
alongside benchmarks/bench_cloaks.py.
"""

import pytest
import torch

from cloaks_testlib import TinyNet, smooth_images
from cloakbench.cloaks.context import build_target_context
from cloakbench.cloaks.fawkes_v03 import FawkesV03
from cloakbench.cloaks.fawkes_v10 import FawkesV10
from cloakbench.cloaks.lowkey import LowKey
from cloakbench.cloaks.metrics import linf

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_graph_replay_runs_each_cloak_and_matches_eager_lowkey():
    ex = TinyNet().cuda()
    x = smooth_images(3).cuda()
    out = {}
    for graph in (False, True):
        c = LowKey([ex], perceptual="dssim", steps=6, device="cuda", cuda_graph=graph)
        out[graph] = c(x)
        assert c.execution == ("cuda_graph" if graph else "eager")
        assert len(c.loss_history) == 7
    # Signed steps: GPU rounding rarely flips a sign, so the pictures agree almost everywhere.
    assert (out[True] - out[False]).abs().mean() < 1e-3

    v10 = FawkesV10([ex], mode="low", steps=6, device="cuda")
    cloaked = v10(x)
    assert v10.execution == "cuda_graph" and len(v10.history["feature"]) == 6
    assert torch.all(linf(cloaked, x) <= 15 / 255 + 1e-6)

    ctx = build_target_context([ex], x, {f"id{i}": smooth_images(2, seed=9 + i).cuda()
                                         for i in range(3)}, device="cuda")
    v03 = FawkesV03([ex], mode="min", steps=6, device="cuda")
    v03.prepare(ctx)
    v03(x)
    assert v03.execution == "cuda_graph" and len(v03.loss_history) == 7
