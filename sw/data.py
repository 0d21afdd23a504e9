"""Training data sets as torch tensors, loaded from their original file formats.

Every loader returns a :class:`Dataset`: images are ``float32`` tensors of shape
``(N, C, H, W)`` with values in ``[0, 1]`` (``uint8 / 255``, or ``/ 16`` for the
4-bit digits), labels are ``int64`` tensors of shape ``(N,)`` in ``0..9``.
Nothing is downloaded: the caller points at files already on disk.

Formats
-------
``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 images, pixels
    ``0..16``).  There is no official split; :func:`load_digits` makes a
    deterministic stratified one.

``svhn``
    The "cropped digits" format of the Street View House Numbers set: a
    directory holding ``train_32x32.mat`` and ``test_32x32.mat``, MATLAB v5
    files (read with :func:`scipy.io.loadmat`; v7.3/HDF5 is not supported).
    Each holds ``X``, an ``H x W x 3 x N`` ``uint8`` array (sample index
    *last*, MATLAB order), and ``y``, the ``N`` labels ``1..10`` where ``10``
    stands for the digit ``0``.  MATLAB has no 1-D arrays, so ``y`` comes as
    ``N x 1`` (the official files) or ``1 x N``; both are accepted, as is a
    plain length-``N`` vector.  Labels are mapped to ``0..9`` (``10 -> 0``).

``mnist``
    The IDX files of MNIST, each optionally gzipped (``NAME`` or ``NAME.gz``):
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.  An IDX file is a
    big-endian ``uint32`` magic ``0x000008DD`` (``0x08`` = ``uint8`` payload,
    ``DD`` = number of dimensions), then one big-endian ``uint32`` per
    dimension, then exactly ``prod(dims)`` payload bytes in C order.  Images
    are ``0x00000803`` (``N x 28 x 28``), labels ``0x00000801`` (``N``).

Every problem with a file (missing, unreadable, truncated, wrong magic, shape,
dtype, counts, no samples at all, or label range) raises :class:`DataFormatError`, whose message
names the file, what was expected and what was found.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS", "NUM_CLASSES", "DataFormatError", "Dataset",
    "load_dataset", "load_digits", "load_svhn", "load_mnist", "read_idx",
    "iterate_minibatches",
]

DATASETS = ("digits", "svhn", "mnist")
NUM_CLASSES = 10

PathLike = str | os.PathLike[str]

SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_SIZE = 28
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
_IDX_UINT8 = 0x08


class DataFormatError(ValueError):
    """A data file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of square images and integer class labels.

    ``train_x``/``test_x`` are ``float32`` ``(N, C, H, W)`` in ``[0, 1]`` with
    ``H == W``; ``train_y``/``test_y`` are ``int64`` ``(N,)`` in
    ``0..num_classes-1``.  The invariants are checked on construction.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y),
                            ("test", self.test_x, self.test_y)):
            if x.dtype != torch.float32 or x.dim() != 4 or x.shape[2] != x.shape[3]:
                raise ValueError(f"{self.name}: {split}_x must be float32 (N, C, H, H), "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: {split}_y must be int64 ({x.shape[0]},), "
                                 f"got {y.dtype} {tuple(y.shape)}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train images {tuple(self.train_x.shape[1:])} and "
                             f"test images {tuple(self.test_x.shape[1:])} differ in shape")

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={self.train_x.shape[0]}, "
                f"test={self.test_x.shape[0]}, in_channels={self.in_channels}, "
                f"image_size={self.image_size}, num_classes={self.num_classes})")


# --------------------------------------------------------------------------- helpers

def _unit_float(pixels: np.ndarray, scale: float) -> torch.Tensor:
    """Integer pixels (any layout numpy can copy) -> contiguous float32 ``pixels / scale``."""
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).div_(scale)


def _labels(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64).reshape(-1))


def _check_label_range(path: Path, labels: np.ndarray, lo: int, hi: int, note: str = "") -> None:
    if labels.size and (labels.min() < lo or labels.max() > hi):
        bad = int(np.count_nonzero((labels < lo) | (labels > hi)))
        raise DataFormatError(f"{path}: expected labels in {lo}..{hi}{note}, found {bad} "
                              f"outside it (values span {labels.min()}..{labels.max()})")


def _require_file(path: Path) -> None:
    if not path.is_file():
        found = "a directory" if path.is_dir() else "no such file"
        raise DataFormatError(f"{path}: expected a data file, found {found}")


# --------------------------------------------------------------------------- digits

def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` in ``[0, 1]`` (pixels ``/ 16``).

    The split is stratified by class and deterministic for a given ``seed``.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    bunch = sklearn_digits()
    images = bunch.images[:, None, :, :]  # (N, 1, 8, 8), float64 holding 0..16
    train_x, test_x, train_y, test_y = train_test_split(
        images, bunch.target, test_size=test_fraction, stratify=bunch.target,
        random_state=seed)
    return Dataset("digits", _unit_float(train_x, 16.0), _labels(train_y),
                   _unit_float(test_x, 16.0), _labels(test_y))


# --------------------------------------------------------------------------- SVHN

def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(X, labels)`` of one SVHN .mat file: X ``(H, W, 3, N)`` uint8, labels ``1..10``."""
    from scipy.io import loadmat

    _require_file(path)
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # scipy raises a zoo of types (MatReadError, OSError, IndexError...)
        raise DataFormatError(f"{path}: expected a MATLAB v5 .mat file with 'X' and 'y', "
                              f"could not read it ({type(exc).__name__}: {exc})") from exc
    for key in ("X", "y"):
        if key not in mat:
            raise DataFormatError(f"{path}: expected variables 'X' and 'y', "
                                  f"'{key}' is missing (found {sorted(k for k in mat if not k.startswith('__'))})")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[0] != x.shape[1]:
        raise DataFormatError(f"{path}: expected 'X' of shape (H, H, 3, N) uint8, "
                              f"found {x.shape} {x.dtype}")
    n = x.shape[3]
    if n == 0:
        raise DataFormatError(f"{path}: expected at least one sample, found none ('X' of shape {x.shape})")
    if y.ndim > 2 or (y.ndim == 2 and 1 not in y.shape) or y.size != n:
        raise DataFormatError(f"{path}: expected 'y' of shape ({n}, 1) to match 'X', found {y.shape}")
    y = y.reshape(-1)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)  # MATLAB stores doubles unless told otherwise
    if y.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: expected integer labels in 'y', found {y.dtype}")
    _check_label_range(path, y, 1, 10, " (10 means digit 0)")
    return x, y


def load_svhn(path: PathLike, size: int | None = None) -> Dataset:
    """SVHN cropped digits from ``path/train_32x32.mat`` and ``path/test_32x32.mat``.

    Images become ``(N, 3, H, W)`` float32 ``/ 255``, labels ``0..9`` (``10 -> 0``).
    With ``size``, images are resized bilinearly (``align_corners=False``) to
    ``size x size`` (the authors' SVHN network takes 40x40) and clamped to
    ``[0, 1]`` against float rounding.
    """
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    root = Path(path)
    splits = []
    for name in SVHN_FILES:
        x, y = _read_svhn_mat(root / name)
        images = _unit_float(x.transpose(3, 2, 0, 1), 255.0)  # (H, W, C, N) -> (N, C, H, W)
        if size is not None and images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear",
                                   align_corners=False).clamp_(0.0, 1.0)
        splits.append((images, _labels(y % 10)))
    (train_x, train_y), (test_x, test_y) = splits
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataFormatError(f"{root / SVHN_FILES[1]}: expected images of the same size as "
                              f"{SVHN_FILES[0]} {tuple(train_x.shape[2:])}, found {tuple(test_x.shape[2:])}")
    return Dataset("svhn", train_x, train_y, test_x, test_y)


# --------------------------------------------------------------------------- MNIST

def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed if its name ends in ``.gz``."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: expected a gzip stream, could not decompress "
                              f"it ({type(exc).__name__}: {exc})") from exc


def _find_idx(root: Path, name: str) -> Path:
    """``root/name`` if it exists, else ``root/name.gz``."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataFormatError(f"{root / name}: expected an IDX file (or {name}.gz), found neither")


def _parse_idx(path: Path, data: bytes, expected_magic: int | None = None) -> np.ndarray:
    """Decode IDX bytes (uint8 payload only); ``path`` is for messages."""
    if len(data) < 4:
        raise DataFormatError(f"{path}: expected a 4-byte IDX magic, found {len(data)} bytes")
    (magic,) = struct.unpack_from(">I", data)
    ndim = magic & 0xFF
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(f"{path}: expected IDX magic 0x{expected_magic:08X} "
                              f"(uint8, {expected_magic & 0xFF}-D), found 0x{magic:08X}")
    if magic >> 8 != _IDX_UINT8 or ndim == 0:
        raise DataFormatError(f"{path}: expected IDX magic 0x000008NN (uint8 payload, NN >= 1 "
                              f"dimensions), found 0x{magic:08X}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: expected a {header}-byte header for {ndim} dimensions, "
                              f"found {len(data)} bytes")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    expected, found = math.prod(dims), len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "trailing bytes"
        raise DataFormatError(f"{path}: {state}: expected {expected} payload bytes for dims "
                              f"{dims}, found {found}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file with a uint8 payload (gzip-compressed if ``path`` ends in ``.gz``).

    Returns a read-only ``uint8`` array of the file's dims.  With
    ``expected_magic`` the magic must match exactly.
    """
    path = Path(path)
    _require_file(path)
    return _parse_idx(path, _read_maybe_gzip(path), expected_magic)


def _read_mnist_split(root: Path, images_name: str, labels_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_path = _find_idx(root, images_name)
    images = _parse_idx(images_path, _read_maybe_gzip(images_path), IDX_IMAGES_MAGIC)
    if images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise DataFormatError(f"{images_path}: expected images of {MNIST_SIZE}x{MNIST_SIZE}, "
                              f"found {images.shape[1]}x{images.shape[2]}")
    if images.shape[0] == 0:
        raise DataFormatError(f"{images_path}: expected at least one image, found none")
    labels_path = _find_idx(root, labels_name)
    labels = _parse_idx(labels_path, _read_maybe_gzip(labels_path), IDX_LABELS_MAGIC)
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{labels_path}: expected {images.shape[0]} labels (one per image "
                              f"in {images_path.name}), found {labels.shape[0]}")
    _check_label_range(labels_path, labels, 0, NUM_CLASSES - 1)
    return _unit_float(images[:, None], 255.0), _labels(labels)


def load_mnist(path: PathLike) -> Dataset:
    """MNIST from the four IDX files (each plain or ``.gz``) in directory ``path``.

    Images become ``(N, 1, 28, 28)`` float32 ``/ 255``, labels ``0..9``.  If both
    ``NAME`` and ``NAME.gz`` exist, the uncompressed one is read.
    """
    root = Path(path)
    train_x, train_y = _read_mnist_split(root, *MNIST_FILES["train"])
    test_x, test_y = _read_mnist_split(root, *MNIST_FILES["test"])
    return Dataset("mnist", train_x, train_y, test_x, test_y)


# --------------------------------------------------------------------------- dispatch

def load_dataset(name: str, path: PathLike | None = None, **kwargs: Any) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`).

    ``digits`` needs no files and ignores ``path``; ``svhn`` and ``mnist`` read
    the directory ``path``.  Extra keyword arguments go to the loader
    (``test_fraction``/``seed`` for digits, ``size`` for SVHN).
    """
    loaders: dict[str, Callable[..., Dataset]] = {
        "digits": load_digits, "svhn": load_svhn, "mnist": load_mnist,
    }
    if name not in loaders:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits(**kwargs)
    if path is None:
        raise ValueError(f"data set {name!r} is read from files: pass the directory that holds "
                         f"them (--data PATH on the command line, path=... in Python)")
    return loaders[name](path, **kwargs)


def iterate_minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                        shuffle: bool, generator: torch.Generator | None = None,
                        drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(xb, yb)`` mini-batches along dimension 0.

    With ``shuffle`` the order is ``torch.randperm(N, generator=generator)``, so a
    generator seeded the same way gives the same batches.  The last partial
    batch is yielded unless ``drop_last``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx.to(x.device)], y[idx.to(y.device)]
