"""The execution environment: device choice, seeding, thread counts, environment variables, the machine."""
from __future__ import annotations

import contextlib
import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

from .config import Settings


@dataclass
class RunSettings(Settings):
    """What every training and evaluation run takes besides its sections: seed, threads, device, intervals."""

    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    device: str = "auto"  # auto = CUDA, then MPS, then CPU
    replicates: int = 200  # bootstrap replicates over test subjects


def select_device(preferred: str | None = "auto") -> torch.device:
    """Return the device to run on: ``auto`` picks CUDA, then MPS, then CPU."""
    if preferred in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preferred)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preferred!r} was requested but CUDA is not available here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {preferred!r} was requested but MPS is not available here")
    return device


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch; make kernels deterministic; return a seeded generator.

    With ``deterministic`` this switches torch to deterministic algorithms for the whole process and
    sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set), as deterministic CUDA matrix products require.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def set_threads(threads: int | None) -> None:
    """Fix torch's intra-op thread count (``None`` or 0 leaves torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


@contextlib.contextmanager
def thread_count(threads: int | None):
    """Temporarily set torch's intra-op thread count, restoring the previous value on exit."""
    previous = torch.get_num_threads()
    try:
        set_threads(threads)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def environment_variable(name: str, value: str):
    """Set environment variable ``name`` to ``value`` inside the block; restore (or remove) it afterwards."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """A JSON-ready description of this machine and software, stored with every result."""
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    return info
