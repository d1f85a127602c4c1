"""Execute the study's units with papermill: locally (a pool of processes) or on a Ray cluster.

A unit is skipped when it is done (its record and done marker exist). A unit runs only after its
dependencies completed; a failure stops its dependants (others go on) and is reported at the end
with the executed notebook that shows the error.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from tqdm import tqdm
from traitlets import default

from ..core.records import Record, clear_done, mark_done, read_record, write_record
from .plan import Unit

KERNEL_DIR_PREFIX = "ocular-kernels-"  # + the runner's pid: the IPC socket files of its kernels
INTERRUPT_GRACE_SECONDS = 10.0  # how long interrupted kernels get to stop before they are killed


@dataclass
class Outcome:
    """What happened to the units of one run of the study."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    interrupted: list[str] = field(default_factory=list)  # units running at a Ctrl-C: they will rerun


class MemorySampler:
    """Peak resident memory of this process and all its children (kernels), sampled in a thread."""

    def __init__(self, interval: float = 0.5):
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self.process, *self.process.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class IPCKernelManager(AsyncKernelManager):
    """Kernels that talk over IPC sockets with a unique path per kernel.

    Concurrent notebooks then never race for TCP ports (a kernel could fail to start with
    'Address already in use'), and nothing travels over unencrypted TCP.
    """

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        folder = kernel_dir()
        folder.mkdir(exist_ok=True)
        return str(folder / uuid.uuid4().hex[:12])

    @default("shutdown_wait_time")
    def _default_shutdown_wait_time(self) -> float:
        return 30.0  # a kernel that held large tensors can take seconds to exit; do not interrupt it

    async def _async_interrupt_kernel(self) -> None:
        """Interrupt a running kernel, but not one being shut down after its notebook finished.

        jupyter_client sends SIGINT before every shutdown request; an idle ipykernel then logs
        ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel`` although nothing went wrong.
        A kernel that does not exit still gets SIGTERM and SIGKILL after ``shutdown_wait_time``.
        """
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def kernel_dir(pid: int | None = None) -> Path:
    """The folder of the IPC socket files of the kernels a runner process starts (removed when it ends)."""
    return Path(tempfile.gettempdir()) / f"{KERNEL_DIR_PREFIX}{os.getpid() if pid is None else pid}"


def remove_kernel_dirs(stale_only: bool = True) -> None:
    """Remove the socket folders of runners that are gone (``stale_only``), or also this runner's own."""
    import psutil

    for folder in Path(tempfile.gettempdir()).glob(f"{KERNEL_DIR_PREFIX}*"):
        pid = folder.name[len(KERNEL_DIR_PREFIX):]
        own = pid == str(os.getpid())
        if pid.isdigit() and ((own and not stale_only) or (not own and not psutil.pid_exists(int(pid)))):
            shutil.rmtree(folder, ignore_errors=True)


def signal_kernels(signum: int) -> int:
    """Send ``signum`` to the process group of every kernel this process started; returns how many."""
    import psutil

    count = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                os.killpg(os.getpgid(child.pid), signum)  # kernels run in their own session
                count += 1
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
    return count


def execute_unit(unit: Unit, root: str | Path, keep_checkpoints: bool = False) -> float:
    """Run one unit's notebook with papermill in ``root``; make sure its record exists. Returns seconds.

    Only when the notebook has finished every cell and its record is complete is the unit marked
    done (``done.json``, written last): a unit killed anywhere before that runs again. Training
    checkpoints (``checkpoints/``, for resuming an interrupted run) are removed once the unit is
    complete unless ``keep_checkpoints``: the saved model and the record are what remain.
    """
    import papermill

    root = Path(root)
    run_dir = root / unit.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    clear_done(run_dir)  # a record left by a run that failed or was killed later is stale
    started = time.perf_counter()
    papermill.execute_notebook(str(unit.notebook), str(root / unit.output), parameters=unit.params,
                               cwd=str(root), progress_bar=False, log_output=False, kernel_name="python3",
                               kernel_manager_class=IPCKernelManager)
    seconds = time.perf_counter() - started
    if unit.kind == "chapter":
        write_record(run_dir, Record("chapter", unit.params, timings={"total": seconds}))
    elif read_record(run_dir) is None:
        raise RuntimeError(f"{unit.notebook.name} finished without writing {run_dir}/record.json")
    mark_done(run_dir, unit.key)
    if not keep_checkpoints and (run_dir / "checkpoints").is_dir():
        shutil.rmtree(run_dir / "checkpoints")  # the finished model is saved beside the record
    return seconds


def _ready(unit: Unit, done: set[str]) -> bool:
    return all(dep in done for dep in unit.deps)


def _may_start(unit: Unit, running: list[Unit], capacity: int) -> bool:
    """A free slot, and no exclusive unit (latency timing) shares the machine with another."""
    if len(running) >= capacity or any(u.exclusive for u in running):
        return False
    return not (unit.exclusive and running)


def estimated_seconds(name: str, history: dict[str, float]) -> float | None:
    """A unit's expected seconds: its own recorded time, else the median of recorded units of its kind."""
    if name in history:
        return history[name]
    kind = name.split("/")[0]
    same = sorted(v for k, v in history.items() if k.split("/")[0] == kind)
    return same[len(same) // 2] if same else None


def progress_text(running: list[str], remaining: list[str], history: dict[str, float], capacity: int) -> str:
    """The progress bar's postfix: the running units and an ETA from recorded unit times (None-safe)."""
    estimates = [estimated_seconds(name, history) for name in remaining]
    known = [e for e in estimates if e is not None]
    untimed = len(estimates) - len(known)
    if known:
        seconds = sum(known) / max(1, capacity)
        eta = f"ETA ~{seconds / 60:.0f} min" if seconds >= 90 else f"ETA ~{seconds:.0f} s"
        eta += f" + {untimed} units of kinds not timed yet" if untimed else ""
    else:
        eta = f"ETA unknown: none of the {untimed} remaining units is of a kind timed yet" if untimed else "finishing"
    shown = ", ".join(running[:2]) + (f" +{len(running) - 2}" if len(running) > 2 else "")
    return f"{shown or 'idle'} | {eta}"


def run_units(units: dict[str, Unit], root: Path, jobs: int = 1, engine: str = "local", max_units: int | None = None,
              ray_address: str | None = None, progress: bool = True, keep_checkpoints: bool = False,
              execute=execute_unit, history: dict[str, float] | None = None,
              known_failures: dict | None = None) -> Outcome:
    """Run every incomplete unit in dependency order with ``jobs`` at a time (or on Ray).

    A unit starts when all its dependencies completed; a failed unit blocks its dependants (and
    theirs) but nothing else; an exclusive unit (latency timing) runs alone. ``execute(unit, root,
    keep_checkpoints) -> seconds`` runs one unit (papermill by default; tests pass a stand-in).
    ``history`` (unit name -> seconds of earlier runs) feeds the progress bar's ETA. ``known_failures``
    (name -> :class:`UnitFailure`): units that failed earlier in this run of the study; they are not
    tried again, and their dependants are blocked.
    """
    history = dict(history or {})
    outcome = Outcome()
    done = {name for name, unit in units.items() if unit.complete(root)}
    outcome.skipped = sorted(done)
    outcome.failed = {name: failure for name, failure in (known_failures or {}).items()
                      if name in units and units[name].key == failure.key and name not in done}
    pending = [name for name in units if name not in done and name not in outcome.failed]
    bar = tqdm(total=len(units), initial=len(done) + len(outcome.failed), desc="study", unit="notebook",
               disable=not progress)
    submit = _local_submitter(jobs, keep_checkpoints, execute) if engine == "local" else \
        _ray_submitter(ray_address, keep_checkpoints, execute, jobs)
    running: dict = {}
    started = 0
    remove_kernel_dirs()
    sampler = MemorySampler().__enter__()
    try:
        while pending or running:
            for name in list(pending):
                unit = units[name]
                if any(dep in outcome.failed or dep in outcome.blocked for dep in unit.deps):
                    pending.remove(name)
                    outcome.blocked.append(name)
                    bar.update()
                elif _ready(unit, done) and _may_start(unit, [units[n] for n in running.values()], submit.capacity) \
                        and (max_units is None or started < max_units):
                    pending.remove(name)
                    running[submit(unit, root)] = name
                    started += 1
            bar.set_postfix_str(progress_text(list(running.values()), pending + list(running.values()), history,
                                              submit.capacity))
            if not running:
                break
            for handle in submit.wait(list(running)):
                name = running.pop(handle)
                try:
                    outcome.seconds[name] = history[name] = submit.result(handle)
                    outcome.executed.append(name)
                    done.add(name)
                except Exception as error:  # reported at the end; dependants are blocked
                    outcome.failed[name] = describe_failure(error, units[name].key)
                bar.update()
    except KeyboardInterrupt:  # stop scheduling; interrupt the running notebooks; they rerun next time
        outcome.interrupted = sorted(running.values())
        signal_kernels(signal.SIGINT)
    finally:
        try:
            if outcome.interrupted and not submit.drain(list(running), INTERRUPT_GRACE_SECONDS):
                signal_kernels(signal.SIGKILL)
            submit.close()
        except KeyboardInterrupt:  # a second Ctrl-C: kill the kernels at once
            outcome.interrupted = outcome.interrupted or sorted(running.values())
            signal_kernels(signal.SIGKILL)
            submit.close(wait=False)
        bar.close()
        sampler.__exit__()
        remove_kernel_dirs(stale_only=False)
        outcome.peak_rss_bytes = sampler.peak
    return outcome


@dataclass
class UnitFailure:
    """Why a unit failed: the exception of its failing cell (type and whole message), and whether it is the user's."""

    error_type: str
    message: str
    user_error: bool
    key: str = ""  # the unit's key when it failed (a re-keyed unit is a new try)

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


# The exceptions the package raises for bad input (the command line shows them as one line, exit 2), and
# the package's own subclasses of them by name: inside a notebook a failing cell reports only the type's name.
USER_ERROR_BASES = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, NotImplementedError)
USER_ERROR_TYPES = frozenset({base.__name__ for base in USER_ERROR_BASES}
                             | {"DatasetError", "CorruptImageError", "IdentityOverlapError", "CalibrationError"})


def describe_failure(error: BaseException, key: str = "") -> UnitFailure:
    """The failing cell's exception of a papermill error (else ``error`` itself) as a :class:`UnitFailure`."""
    cell_error = getattr(error, "ename", None)
    error_type = cell_error or type(error).__name__
    message = getattr(error, "evalue", None) if cell_error else str(error)
    message = " ".join(str(message or "").split()) or "(no message)"
    return UnitFailure(error_type, message, error_type in USER_ERROR_TYPES, key)


class _local_submitter:
    """Runs units in a thread pool; each unit's kernel is its own process."""

    def __init__(self, jobs: int, keep_checkpoints: bool = False, execute=execute_unit):
        self.capacity = max(1, jobs)
        self.keep = keep_checkpoints
        self.execute = execute
        self.pool = ThreadPoolExecutor(max_workers=self.capacity)

    def __call__(self, unit: Unit, root: Path):
        return self.pool.submit(self.execute, unit, root, self.keep)

    def wait(self, handles):
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        return list(finished)

    def result(self, handle):
        return handle.result()

    def drain(self, handles, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``handles``; True if all finished."""
        return not wait(handles, timeout=timeout).not_done

    def close(self, wait: bool = True):
        self.pool.shutdown(wait=wait, cancel_futures=True)


class _ray_submitter:
    """Runs units as Ray tasks (one CPU each, one GPU for training units when the profile asks for CUDA).

    At most ``jobs`` units run at once, fewer when the cluster has fewer CPUs.
    """

    def __init__(self, address: str | None, keep_checkpoints: bool = False, execute=execute_unit, jobs: int = 1):
        try:
            import ray
        except ImportError as error:
            raise RuntimeError("the ray engine needs Ray: pip install 'ocular-utils[cluster]'") from error
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
        resources = ray.cluster_resources()
        self.capacity = max(1, min(jobs, int(resources.get("CPU", 1))))
        self.has_gpus = resources.get("GPU", 0) > 0
        self.keep = keep_checkpoints
        self.remote = ray.remote(execute)

    def __call__(self, unit: Unit, root: Path):
        gpus = unit.gpus if self.has_gpus else 0  # asking a GPU-less cluster for GPUs would wait forever
        return self.remote.options(num_cpus=1, num_gpus=gpus).remote(unit, str(root), self.keep)

    def wait(self, handles):
        finished, _ = self.ray.wait(handles, num_returns=1)
        return finished

    def result(self, handle):
        return self.ray.get(handle)

    def drain(self, handles, timeout: float) -> bool:
        """Cancel the running tasks (their kernels are interrupted); True once all stopped within ``timeout``."""
        for handle in handles:
            self.ray.cancel(handle)
        _, not_done = self.ray.wait(handles, num_returns=len(handles), timeout=timeout) if handles else ([], [])
        return not not_done

    def close(self, wait: bool = True):
        pass
