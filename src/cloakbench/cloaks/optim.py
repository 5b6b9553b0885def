"""Optimisation pieces shared by the reimplemented cloaks (Fawkes v0.3, Fawkes v1.0, LowKey):
the tanh parametrisation, the per-step history, Adadelta written out, the CUDA-graph step runner.

Kept apart from the algorithms so each cloak module reads as its paper's algorithm.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch

# Fawkes maps pixels to tanh space with this constant so that 0 and 1 stay finite
# (arctanh(+-1) would be infinite). Both Fawkes releases use it.
TANH_CONSTANT = 2.0 - 1e-6


def to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pictures -> unbounded tanh-space variables (computed in float64 for the edges)."""
    return torch.atanh((x.double() - 0.5) * TANH_CONSTANT).to(x.dtype)


def from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_tanh_space`: always strictly inside (0, 1)."""
    return torch.tanh(w) / TANH_CONSTANT + 0.5


class History:
    """Per-step batch means of an optimisation (``history["loss"][i]`` = record i).

    Exposed as ``cloak.history`` after each call, for logs and for tests that check the
    objective actually improves. The buffers are allocated up front on the cloak's
    device and written at a device-side position, so recording never forces a GPU
    synchronisation and works inside a captured CUDA graph; they are turned into floats
    on first read.
    """

    def __init__(self, length: int = 0, keys: Sequence[str] = (),
                 device: str | torch.device = "cpu"):
        self._bufs = {k: torch.full((length,), float("nan"), device=device) for k in keys}
        self._pos = torch.zeros(1, dtype=torch.long, device=device)
        self._floats: dict[str, list[float]] = {}

    def add(self, **values: torch.Tensor) -> None:
        """Write each value's mean at the current position (declared keys only)."""
        for key, value in values.items():
            self._bufs[key].index_copy_(0, self._pos, value.detach().float().mean().reshape(1))
        self._floats = {}

    def advance(self) -> None:
        self._pos += 1

    def __getitem__(self, key: str) -> list[float]:
        if key not in self._floats:
            n = int(self._pos.item())
            self._floats[key] = self._bufs[key][:n].cpu().tolist()
        return self._floats[key]

    def __contains__(self, key: str) -> bool:
        return key in self._bufs

    def keys(self):
        return self._bufs.keys()

    def as_dict(self) -> dict[str, list[float]]:
        return {key: self[key] for key in self._bufs}


@torch.no_grad()
def adadelta_update(param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor,
                    acc_delta: torch.Tensor, lr: float | torch.Tensor, rho: float,
                    eps: float) -> None:
    """One Adadelta update in place, with ``torch.optim.Adadelta``'s arithmetic.

    Written out (4 lines, checked against ``torch.optim.Adadelta`` in the tests) so that
    it runs inside a CUDA graph with a learning rate held in a device tensor, which
    Fawkes v0.3 decays during the optimisation.
    """
    square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    delta = acc_delta.add(eps).sqrt_().div_(square_avg.add(eps).sqrt_()).mul_(grad)
    acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    if isinstance(lr, torch.Tensor):
        param.sub_(delta.mul_(lr))
    else:
        param.add_(delta, alpha=-lr)


class StepRunner:
    """Runs one optimisation step per call: eagerly, or on CUDA by replaying a CUDA graph.

    Why: with face models as small as SFace, a GPU step is bound by kernel launches and
    Python, not arithmetic, so the cloak's own few hundred small operations per step
    (DSSIM, optimiser, bookkeeping) would cost as much as the model. Replaying a captured
    graph of the whole step (forward, backward, update) launches it at once.

    ``step`` must keep all its state in tensors it updates in place and must not read
    device values on the host. The first ``warmup`` calls run eagerly on a side stream
    (real steps of the algorithm, which also settle cuDNN's choices), the next call
    captures the step and replays it, later calls replay. If capture fails (e.g. a model
    that synchronises), a warning says so and the steps run eagerly: same numbers,
    slower. ``mode`` records which happened.
    """

    def __init__(self, step: Callable[[], None], device: torch.device, enabled: bool,
                 warmup: int = 1):
        self.step = step
        self.device = torch.device(device)
        self.enabled = bool(enabled) and self.device.type == "cuda"
        self.mode = "cuda_graph" if self.enabled else "eager"
        self._warmup = warmup
        self._graph: Any = None
        self._stream = torch.cuda.Stream(self.device) if self.enabled else None

    def __call__(self) -> None:
        if not self.enabled:
            self.step()
            return
        if self._graph is None and self._warmup > 0:
            current = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(current)
            with torch.cuda.stream(self._stream):
                self.step()
            current.wait_stream(self._stream)
            self._warmup -= 1
            return
        if self._graph is None:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self.step()
            except Exception as exc:  # noqa: BLE001 - any capture failure -> eager
                torch.cuda.synchronize(self.device)
                warnings.warn(f"CUDA graph capture of the cloak step failed ({exc!r}); running "
                              "the steps eagerly (same results, slower). Set the cloak's "
                              "cuda_graph: false to skip the attempt.", RuntimeWarning)
                self.enabled = False
                self.mode = "eager (graph capture failed)"
                self.step()
                return
            self._graph = graph
        self._graph.replay()
