"""Image decoding, the resized-image store (memory or on-disk cache) and training batches.

Every image is decoded and resized once into a ``uint8`` array of shape (N, H, W, 3); training
then slices batches from it, so decoding is never the bottleneck. With ``cache_dir`` the array
is a memory-mapped file keyed by the image list and size, reused by later runs and processes.
Unreadable images are counted and reported: ``on_corrupt='error'`` (default) raises,
``'skip'`` drops them and says which.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from ..core.atomic import atomic_path, atomic_write_json
from .config import DataConfig
from .schema import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CORRUPT_POLICIES = ("error", "skip")


class CorruptImageError(DatasetError):
    """One or more image files could not be decoded."""


# The first bytes of the image formats Pillow decodes that data sets use (JPEG, PNG, BMP, TIFF, GIF, WebP).
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a")


def unreadable_images(paths) -> list[str]:
    """The files among ``paths`` that are missing, empty or do not start like an image (a cheap check: no decoding;
    a truncated file passes it and fails when decoded)."""
    bad = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                head = handle.read(12)
        except OSError:
            bad.append(str(path))
            continue
        webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
        if not (webp or any(head.startswith(signature) for signature in IMAGE_SIGNATURES)):
            bad.append(str(path))
    return bad


def decode_image(path: str, size: tuple[int, int]) -> np.ndarray:
    """Decode ``path`` to RGB and resize it to ``size`` = (height, width); raises on a bad file."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _decode_chunk(args: tuple[list[str], tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    paths, size = args
    out = np.zeros((len(paths), size[0], size[1], 3), np.uint8)
    failures = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_image(path, size)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            failures.append((i, f"{type(error).__name__}: {error}"))
    return out, failures


@dataclass
class ImageStore:
    """Resized uint8 images of a data set, addressed by the row order of ``frame``."""

    frame: pd.DataFrame
    size: tuple[int, int]
    pixels: np.ndarray
    corrupt: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "error"]))
    decode_seconds: float = 0.0
    cache_path: Path | None = None

    @property
    def decode_rate(self) -> float:
        """Images decoded and resized per second when the store was built (0 if loaded from cache)."""
        return len(self.frame) / self.decode_seconds if self.decode_seconds else 0.0

    def positions(self, paths: pd.Series) -> np.ndarray:
        """Row positions in the store of the given image paths."""
        index = pd.Index(self.frame["path"])
        positions = index.get_indexer(paths)
        if (positions < 0).any():
            missing = list(paths[positions < 0][:3])
            raise DatasetError(f"{int((positions < 0).sum())} images are not in the image store (e.g. {missing})")
        return positions


def _cache_key(paths: list[str], size: tuple[int, int]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(size)).encode())
    for path in paths:
        stat = os.stat(path) if os.path.exists(path) else None
        digest.update(f"{path}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()[:20]


def build_image_store(frame: pd.DataFrame, size: tuple[int, int], cache_dir: str | Path | None = None,
                      workers: int = 0, on_corrupt: str = DataConfig.on_corrupt, chunk: int = 256) -> ImageStore:
    """Decode every image of ``frame`` once, resized to ``size`` = (height, width).

    ``workers`` > 1 decodes in worker processes (0 = one per CPU, at most 8). With ``cache_dir`` the
    result is stored as ``<key>.u8`` + ``<key>.json`` and memory-mapped on later calls.
    """
    if on_corrupt not in CORRUPT_POLICIES:
        raise ValueError(f"unknown on_corrupt policy {on_corrupt!r}; expected one of {CORRUPT_POLICIES}")
    size = (int(size[0]), int(size[1]))
    frame = frame.reset_index(drop=True)
    if cache_dir is None:
        pixels = np.empty((len(frame), size[0], size[1], 3), np.uint8)
        corrupt, seconds = _decode_all(list(frame["path"]), size, pixels, workers, chunk, on_corrupt)
        keep = _kept(frame, corrupt)
        return ImageStore(frame[keep].reset_index(drop=True), size,
                          pixels[keep.to_numpy()] if len(corrupt) else pixels, corrupt, seconds)
    cache_path = Path(cache_dir) / f"images-{size[0]}x{size[1]}-{_cache_key(list(frame['path']), size)}"
    return _load_cached(frame, size, cache_path, on_corrupt) or _write_cache(frame, size, cache_path, workers, chunk,
                                                                             on_corrupt)


def _kept(frame: pd.DataFrame, corrupt: pd.DataFrame) -> pd.Series:
    return ~frame["path"].isin(set(corrupt["path"]))


def _cached_pixels(cache_path: Path, count: int, size: tuple[int, int]) -> np.memmap:
    return np.memmap(cache_path.with_suffix(".u8"), dtype=np.uint8, mode="r", shape=(count, size[0], size[1], 3))


def _load_cached(frame: pd.DataFrame, size: tuple[int, int], cache_path: Path, on_corrupt: str) -> ImageStore | None:
    """The store a previous call wrote at ``cache_path`` (memory-mapped), or None when there is none."""
    meta_path = cache_path.with_suffix(".json")
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    corrupt = pd.DataFrame(meta["corrupt"], columns=["path", "error"])
    if len(corrupt) and on_corrupt == "error":
        _raise_corrupt(corrupt)
    keep = _kept(frame, corrupt)
    return ImageStore(frame[keep].reset_index(drop=True), size, _cached_pixels(cache_path, meta["count"], size),
                      corrupt, 0.0, cache_path)


def _write_cache(frame: pd.DataFrame, size: tuple[int, int], cache_path: Path, workers: int, chunk: int,
                 on_corrupt: str) -> ImageStore:
    """Decode straight into the cache file (through :func:`atomic_path`: concurrent builders never share a temporary
    file, an interrupted one leaves nothing), drop what failed, then write the cache's description."""
    paths = list(frame["path"])
    with atomic_path(cache_path.with_suffix(".u8")) as tmp:
        pixels = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(paths), size[0], size[1], 3))
        corrupt, seconds = _decode_all(paths, size, pixels, workers, chunk, on_corrupt)
        keep = _kept(frame, corrupt)
        if len(corrupt):  # compact only when something was dropped
            compact = np.asarray(pixels)[keep.to_numpy()]
            del pixels
            compact.tofile(tmp)
        else:
            pixels.flush()
            del pixels
    atomic_write_json(cache_path.with_suffix(".json"),
                      {"count": int(keep.sum()), "size": list(size), "corrupt": corrupt.values.tolist()})
    return ImageStore(frame[keep].reset_index(drop=True), size, _cached_pixels(cache_path, int(keep.sum()), size),
                      corrupt, seconds, cache_path)


def _decode_all(paths: list[str], size: tuple[int, int], out: np.ndarray, workers: int, chunk: int,
                on_corrupt: str) -> tuple[pd.DataFrame, float]:
    """Decode ``paths`` into ``out`` in chunks (in worker processes when ``workers`` > 1); the failures and seconds.
    Raises :class:`CorruptImageError` on any failure under ``on_corrupt='error'``."""
    started = time.perf_counter()
    workers = workers or min(8, os.cpu_count() or 1)
    jobs = [(paths[i:i + chunk], size) for i in range(0, len(paths), chunk)]
    failures: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        mapper = map
        if workers > 1 and len(jobs) > 1:
            # spawn, not fork: notebooks' kernels hold threads that a forked child would inherit half-locked
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers,
                                                           mp_context=multiprocessing.get_context("spawn")))
            mapper = pool.map
        for start, (block, errors) in zip(range(0, len(paths), chunk), mapper(_decode_chunk, jobs)):
            out[start:start + len(block)] = block
            failures += [(paths[start + i], message) for i, message in errors]
    corrupt = pd.DataFrame(failures, columns=["path", "error"])
    if len(corrupt) and on_corrupt == "error":
        _raise_corrupt(corrupt)
    return corrupt, time.perf_counter() - started


def _raise_corrupt(corrupt: pd.DataFrame) -> None:
    examples = "; ".join(f"{p} ({e})" for p, e in corrupt.head(3).itertuples(index=False))
    raise CorruptImageError(f"{len(corrupt)} image files could not be decoded: {examples}. "
                            "Fix or remove them, or pass on_corrupt='skip' to drop them (they are then reported)")


def to_tensor(pixels: np.ndarray, flip: np.ndarray | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalized float (N, 3, H, W); ``flip`` mirrors the marked rows."""
    batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255)
    if flip is not None and flip.any():
        rows = torch.from_numpy(np.asarray(flip, bool))
        batch[rows] = batch[rows].flip(-1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def augment(batch: torch.Tensor, generator: torch.Generator, max_shift: float = 0.08,
            brightness: float = 0.2, contrast: float = 0.2) -> torch.Tensor:
    """Random translation (reflect padding) and brightness/contrast jitter, per image, seeded."""
    n, _, h, w = batch.shape
    pad_y, pad_x = max(1, int(round(h * max_shift))), max(1, int(round(w * max_shift)))
    padded = torch.nn.functional.pad(batch, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    dy = torch.randint(0, 2 * pad_y + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad_x + 1, (n,), generator=generator)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * contrast
    shift = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * gain + mean + shift


class BatchLoader:
    """Seeded mini-batches of (images, labels) sliced from an :class:`ImageStore`.

    Each epoch reshuffles with the loader's generator; under data parallelism each rank takes
    its own shard of the same permutation. ``state_dict`` / ``load_state_dict`` make it resumable.
    """

    def __init__(self, store: ImageStore, frame: pd.DataFrame, batch_size: int, shuffle: bool = True,
                 augment_images: bool = False, seed: int = 0, drop_last: bool = True, rank: int = 0,
                 world_size: int = 1, max_batches: int | None = None):
        self.positions = store.positions(frame["path"])
        self.pixels = store.pixels
        labels = np.array(frame["label"]) if "label" in frame else np.zeros(len(frame))
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.flip = frame["flip"].to_numpy(bool) if "flip" in frame else np.zeros(len(frame), bool)
        self.batch_size, self.shuffle, self.augment_images = batch_size, shuffle, augment_images
        self.drop_last, self.rank, self.world_size, self.max_batches = drop_last, rank, world_size, max_batches
        self.generator = torch.Generator().manual_seed(seed)
        if len(self.positions) < batch_size and drop_last:
            raise DatasetError(f"{len(self.positions)} images are fewer than one batch of {batch_size}")

    def __len__(self) -> int:
        per_rank = len(self.positions) // self.world_size
        n = per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)
        return min(n, self.max_batches) if self.max_batches else n

    def state_dict(self) -> dict:
        """The shuffling generator's state (for resuming mid-study)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the shuffling generator's state."""
        self.generator.set_state(state["generator"])

    def __iter__(self):
        n = len(self.positions)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[: n - n % self.world_size][self.rank::self.world_size]
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size].numpy()
            rows = self.positions[idx]
            sorted_rows = np.argsort(rows)
            pixels = np.empty((len(rows),) + self.pixels.shape[1:], np.uint8)
            pixels[sorted_rows] = self.pixels[rows[sorted_rows]]
            x = to_tensor(pixels, self.flip[idx])
            if self.augment_images:
                x = augment(x, self.generator)
            yield x, self.labels[idx]


def iterate_images(store: ImageStore, frame: pd.DataFrame, batch_size: int = 256):
    """Unshuffled, unaugmented batches of the images of ``frame`` (for embedding)."""
    positions = store.positions(frame["path"])
    flip = frame["flip"].to_numpy(bool) if "flip" in frame else np.zeros(len(frame), bool)
    for start in range(0, len(positions), batch_size):
        rows = positions[start:start + batch_size]
        yield to_tensor(store.pixels[np.sort(rows)][np.argsort(np.argsort(rows))], flip[start:start + batch_size])


def loader_throughput(store: ImageStore, frame: pd.DataFrame, batch_size: int, batches: int = 20,
                      augment_images: bool = True) -> float:
    """Training batches per second x batch size: images/s the loader delivers (decoding already done)."""
    loader = BatchLoader(store, frame, batch_size, augment_images=augment_images, max_batches=batches)
    started = time.perf_counter()
    count = sum(len(y) for _, y in loader)
    return count / (time.perf_counter() - started)
