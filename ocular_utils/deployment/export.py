"""Export the deployed embedding network for mobile runtimes, and run the exported files.

* ONNX (``torch.onnx.export``, dynamo exporter) with a dynamic batch dimension, run by ONNX Runtime.
* ExecuTorch ``.pte`` lowered to the XNNPACK backend (what phones run), run by ExecuTorch's runtime.
* Core ML ``.mlpackage`` when ``coremltools`` is installed (export only: it cannot run on Linux).

Every export is checked against eager PyTorch: outputs must agree within ``ATOL`` / ``RTOL``.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.atomic import atomic_path, atomic_write_bytes
from ..core.environment import environment_variable, logger_level

ATOL = 1e-3
RTOL = 1e-3


def size_tag(size) -> str:
    """``'32x48'`` for an input size ``(32, 48)`` (height x width): how files and tables name an input size."""
    return f"{size[0]}x{size[1]}"


def size_from_tag(tag: str) -> tuple[int, int]:
    """``(32, 48)`` from ``'32x48'``; an error naming the tag when it is not ``HEIGHTxWIDTH``."""
    try:
        height, width = (int(part) for part in str(tag).lower().split("x"))
    except ValueError:
        raise ValueError(f"input size {tag!r} is not HEIGHTxWIDTH (e.g. 32x48)") from None
    return height, width


class ExportMismatchError(RuntimeError):
    """An exported model's outputs differ from eager PyTorch beyond the stated tolerance."""


def example_input(input_size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Seeded normal noise ``randn(batch, 3, H, W)`` (``torch.Generator().manual_seed(seed)``): exports, timing, kit."""
    return torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(seed))


def check_agreement(reference: np.ndarray, output: np.ndarray, runtime: str) -> float:
    """Max absolute difference; raises :class:`ExportMismatchError` beyond the tolerance."""
    difference = float(np.max(np.abs(reference - output)))
    if not np.allclose(output, reference, atol=ATOL, rtol=RTOL):
        raise ExportMismatchError(f"{runtime} output differs from eager PyTorch by up to {difference:.3g} "
                                  f"(tolerance atol={ATOL}, rtol={RTOL})")
    return difference


def _eager(network: nn.Module, x: torch.Tensor) -> np.ndarray:
    network.eval()
    with torch.inference_mode():
        return network(x).numpy()


def export_onnx(network: nn.Module, path: str | Path, input_size: tuple[int, int]) -> Path:
    """Write ``network`` (eval mode, CPU) as ONNX with a dynamic batch dimension (atomically: a file hard-linked
    elsewhere, e.g. in the phone kit, is replaced, never written through)."""
    path = Path(path)
    network = network.eval().cpu()
    x = example_input(input_size, batch=2)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(network, (x,), dynamo=True, input_names=["images"], output_names=["embedding"],
                                dynamic_shapes=({0: batch},), verbose=False)
    with atomic_path(path) as tmp:
        program.save(tmp)
    return path


def onnx_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session with a fixed intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def verify_onnx(network: nn.Module, path: str | Path, input_size: tuple[int, int]) -> float:
    """Run the ONNX file at batch 1 and 3 and compare with eager; return the max difference."""
    session = onnx_session(path)
    worst = 0.0
    for batch in (1, 3):
        x = example_input(input_size, batch=batch, seed=batch)
        output = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        worst = max(worst, check_agreement(_eager(network, x), output, "ONNX Runtime"))
    return worst


def executorch_available() -> bool:
    """True if ExecuTorch (with its XNNPACK backend) is importable."""
    return importlib.util.find_spec("executorch") is not None


@logger_level("torch.utils._pytree", logging.ERROR)
def lower_to_xnnpack(module: nn.Module, input_size: tuple[int, int]):
    """``torch.export`` ``module`` at batch 1 and lower it to XNNPACK: ExecuTorch's edge program manager."""
    with quiet_native_logs():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad():
        program = torch.export.export(module, (example_input(input_size),))
    with quiet_native_logs():
        return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])


def executorch_buffer(edge) -> bytes:
    """The ``.pte`` bytes of a lowered edge program."""
    with quiet_native_logs():
        return edge.to_executorch().buffer


def export_executorch(network: nn.Module, path: str | Path, input_size: tuple[int, int]) -> Path:
    """Lower ``network`` to an ExecuTorch ``.pte`` program delegated to XNNPACK (batch 1), written atomically."""
    return atomic_write_bytes(path, executorch_buffer(lower_to_xnnpack(network.eval().cpu(), input_size)))


@contextlib.contextmanager
def quiet_native_logs():
    """Silence informational C++ logging (ExecuTorch's cpuinfo/threadpool lines) on stdout/stderr.

    Both levels: the file descriptors (plain Python) and ``sys.stdout``/``sys.stderr`` (ExecuTorch's
    bindings write through Python's streams, which a Jupyter kernel forwards to the notebook).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    libc = ctypes.CDLL(None)
    libc.fflush(None)
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        libc.fflush(None)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


@logger_level("torch.utils._pytree", logging.ERROR)
def executorch_method(path: str | Path):
    """Load the ``forward`` method of a ``.pte`` file with ExecuTorch's Python runtime."""
    from executorch.runtime import Runtime

    with quiet_native_logs():
        return Runtime.get().load_program(str(path)).load_method("forward")


def set_executorch_threads(threads: int) -> int:
    """Resize ExecuTorch's CPU thread pool; return the previous size."""
    from executorch.extension.pybindings import portable_lib

    with quiet_native_logs():
        previous = portable_lib._threadpool_get_thread_count()
        portable_lib._unsafe_reset_threadpool(threads)
    return previous


def verify_executorch(network: nn.Module, path: str | Path, input_size: tuple[int, int]) -> float:
    """Run the ``.pte`` at batch 1 and compare with eager; return the max difference."""
    x = example_input(input_size, seed=1)
    output = executorch_method(path).execute([x])[0].numpy()
    return check_agreement(_eager(network, x), output, "ExecuTorch (XNNPACK)")


def coreml_available() -> bool:
    """True if coremltools is importable (Core ML export is optional)."""
    return importlib.util.find_spec("coremltools") is not None


def export_coreml(network: nn.Module, path: str | Path, input_size: tuple[int, int], int8_weights: bool = False
                  ) -> Path:
    """Convert ``network`` to a Core ML ML Program package (``.mlpackage``, fp16 compute); needs coremltools.

    ``int8_weights``: weights stored as symmetric per-channel int8 (``coremltools.optimize``), activations fp16.
    """
    if not coreml_available():
        raise RuntimeError("coremltools is not installed; pip install 'ocular-utils[coreml]' to export Core ML")
    with warnings.catch_warnings(), logger_level("coremltools", logging.ERROR):
        warnings.simplefilter("ignore")
        import coremltools as ct

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        network = network.eval().cpu()
        example = example_input(input_size)
        with torch.no_grad():
            traced = torch.jit.trace(network, example)
        # coremltools' conversion and compression progress bars (tqdm reads TQDM_DISABLE at import, so also
        # silence the stream they write to)
        with environment_variable("TQDM_DISABLE", "1"), contextlib.redirect_stderr(io.StringIO()):
            model = ct.convert(traced, inputs=[ct.TensorType(name="images", shape=tuple(example.shape))],
                               convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15)
            if int8_weights:
                config = ct.optimize.coreml.OptimizationConfig(
                    global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric"))
                model = ct.optimize.coreml.linear_quantize_weights(model, config)
        model.save(str(path))
    return path
