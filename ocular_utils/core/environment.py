"""The execution environment: device choice, seeding, thread counts, environment variables, the machine."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

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
    precision: str = "auto"  # of training steps: auto | fp32 | bf16 (see resolve_precision)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")


PRECISIONS = ("auto", "fp32", "bf16")
RUN_SETTINGS = tuple(f.name for f in dataclasses.fields(RunSettings))  # what every run notebook takes
# Where bf16 autocast made training steps faster in benchmarks/train_throughput.py (native bf16 only).
BF16_PAYS_ON = ("cuda",)
# Where channels_last made training steps faster (H200: ResNet50 at 224x224, batch 128, bf16: 1.65x;
# a CPU: at most 1.08x for ResNet50, and the study's CPU records stay as they were).
CHANNELS_LAST_PAYS_ON = ("cuda",)


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


def native_bf16(device: torch.device | str) -> bool:
    """True where ``device`` computes bf16 in hardware: CUDA with bf16, CPUs with AVX512_BF16, AMX or ARM BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(name, False) for name in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision training steps run at on ``device``: ``fp32`` or ``bf16``.

    ``auto`` is bf16 where the device has native bf16 and the throughput benchmark showed a gain
    there (``BF16_PAYS_ON``), fp32 elsewhere; ``bf16`` is honoured anywhere autocast supports it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type in BF16_PAYS_ON and native_bf16(device) else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision bf16 needs a CPU or CUDA device (got {device}); use fp32")
    return precision


def training_memory_format(device: torch.device | str) -> torch.memory_format:
    """The memory format of training steps on ``device``: channels_last where it paid (``CHANNELS_LAST_PAYS_ON``)."""
    return torch.channels_last if torch.device(device).type in CHANNELS_LAST_PAYS_ON else torch.contiguous_format


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a training step at ``precision`` (``fp32``: a no-op context)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


@contextlib.contextmanager
def logger_level(name: str, level: int):
    """Set logger ``name`` to ``level`` inside the block (or the decorated function); restore it afterwards."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.setLevel(previous)


def process_age_seconds() -> float:
    """Seconds since this process started.

    On Linux from the kernel's own clocks (to a clock tick, 10 ms): the process's start in ticks since boot
    against ``CLOCK_BOOTTIME``. psutil's ``create_time`` adds that start to a boot time rounded down to whole
    seconds, so an age taken from it is too long by up to a second (0.91 s on one machine). Elsewhere psutil's.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # after the command's name
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5): starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, or no CLOCK_BOOTTIME (macOS)
        import psutil

        return time.time() - psutil.Process().create_time()


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


def source_commit(root: str | os.PathLike | None = None) -> str:
    """The short git commit of the checkout at ``root`` (the package's by default), with ``+changes`` when its
    tracked files differ from it; outside a git checkout, ``$OCULAR_SOURCE_COMMIT`` (a copy of the tree set it)
    or ``"unknown"``. Benchmarks stamp their tables with it."""
    import subprocess

    root = str(root or Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("OCULAR_SOURCE_COMMIT", "unknown")
    return commit + ("+changes" if dirty else "")


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
