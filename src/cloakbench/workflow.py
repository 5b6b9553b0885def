"""Glue for Snakemake ``script:`` files: logging into the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import CloakbenchError


@contextlib.contextmanager
def log_to(log_path: str | Path, rule: str = "", threads: int | None = None) -> Iterator[logging.Logger]:
    """Send logging, stdout and stderr (tqdm progress included) of a rule to its log file.

    ``threads``: the rule's thread budget; torch is held to it, because torch's default
    (one thread per core) oversubscribes the machine when Snakemake runs jobs side by side.
    """
    if threads:
        hold_threads(int(threads))
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        logger = logging.getLogger(f"cloakbench.rule.{rule}" if rule else "cloakbench.rule")
        start = time.perf_counter()
        try:
            yield logger
        except CloakbenchError as exc:
            # a configuration or data error: its message says what and how to fix, one line
            # without a traceback (the job fails with exit status 1)
            logger.error("rule %s failed: %s", rule, exc)
            raise SystemExit(1) from None
        except BaseException:
            logger.exception("rule %s failed", rule)
            raise
        finally:
            logger.info("rule %s finished in %.1f s", rule, time.perf_counter() - start)
            sys.stdout, sys.stderr = old_out, old_err
            root.handlers[:] = []


#: the thread pools a job may start (OpenMP: torch's intra-op pool; BLAS for numpy and sklearn)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def hold_threads(threads: int) -> None:
    """Hold torch and the BLAS libraries to ``threads``, without importing torch: a job that
    never needs torch (``evaluate``, ``scrape``...) must not pay its 2 s import just to set a
    thread count. The environment covers a torch or numpy imported later in the job."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def resolve_device(device: str) -> str:
    """The torch device a job runs on, for config value ``device`` (cpu, cuda, auto); logged,
    so every job's log says what it used."""
    import torch

    log = logging.getLogger(__name__)
    if device == "auto":
        if torch.cuda.is_available():
            log.info("device: auto -> cuda (%s)", torch.cuda.get_device_name(0))
            return "cuda"
        log.info("device: auto -> cpu (torch sees no GPU on this machine)")
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from .errors import ConfigError
        raise ConfigError("config key 'device': 'cuda' requested but torch sees no GPU on this machine; "
                          "accepted values: cpu, cuda (needs a GPU), auto (cuda when there is a GPU, else cpu)")
    if device == "cuda":
        log.info("device: cuda (%s)", torch.cuda.get_device_name(0))
    else:
        log.info("device: %s (%d torch threads)", device, torch.get_num_threads())
    return device
