"""Data loaders: tiny files written in the exact on-disk formats, then read back."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from sw.data import (
    DATASETS, DataFormatError, Dataset, iterate_minibatches, load_dataset, load_digits,
    load_mnist, load_svhn, read_idx,
)

MNIST_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# --------------------------------------------------------------------------- writers

def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """IDX encoding of a uint8 array, built byte by byte with struct."""
    magic = 0x00000800 | array.ndim if magic is None else magic
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def mnist_arrays(n_train: int = 7, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train[0].flat[:256] = np.arange(256)  # every pixel value once
    return {
        "train_images": train,
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }


def write_mnist(root: Path, arrays: dict[str, np.ndarray], gz: bool = False) -> None:
    suffix = ".gz" if gz else ""
    for key, name in MNIST_NAMES.items():
        write_idx(root / f"{name}{suffix}", idx_bytes(arrays[key]))


def svhn_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    x[:, :, 0, 0].flat[:256] = np.arange(256)
    y = (np.arange(n, dtype=np.uint8) % 10 + 1).reshape(n, 1)  # 1..10, includes 10
    return x, y


def write_svhn(root: Path, n_train: int = 12, n_test: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    arrays = {"train": svhn_arrays(n_train, 1), "test": svhn_arrays(n_test, 2)}
    for split, (x, y) in arrays.items():
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
    return arrays


def expected_pixels(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32)) / 255


# --------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def test_digits_shape_range_and_dtype(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.train_x.shape[1:] == (1, 8, 8) and digits.test_x.shape[1:] == (1, 8, 8)
    assert digits.train_x.shape[0] + digits.test_x.shape[0] == 1797
    assert digits.test_x.shape[0] == pytest.approx(0.2 * 1797, abs=1)
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    for x in (digits.train_x, digits.test_x):
        assert x.min() == 0.0 and x.max() == 1.0
        assert torch.equal(x * 16, (x * 16).floor())  # exactly k/16
    assert (digits.in_channels, digits.image_size, digits.num_classes) == (1, 8, 10)


def test_digits_deterministic_and_stratified(digits: Dataset) -> None:
    again = load_digits()
    assert torch.equal(again.train_x, digits.train_x) and torch.equal(again.test_y, digits.test_y)
    other = load_digits(seed=1)
    assert not torch.equal(other.test_y, digits.test_y)
    train_share = torch.bincount(digits.train_y, minlength=10) / digits.train_y.numel()
    test_share = torch.bincount(digits.test_y, minlength=10) / digits.test_y.numel()
    assert torch.allclose(train_share, test_share, atol=0.01)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_digits_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=fraction)


# --------------------------------------------------------------------------- SVHN

def test_svhn_layout_labels_and_pixels(tmp_path: Path) -> None:
    arrays = write_svhn(tmp_path)
    ds = load_svhn(tmp_path)
    assert (ds.name, ds.in_channels, ds.image_size) == ("svhn", 3, 32)
    for split, x_out, y_out in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        x, y = arrays[split]
        assert torch.equal(x_out, expected_pixels(x.transpose(3, 2, 0, 1)))
        assert torch.equal(y_out, torch.from_numpy(y[:, 0].astype(np.int64) % 10))
    assert torch.equal(ds.train_x[0, 0].flatten()[:256], torch.arange(256, dtype=torch.float32) / 255)
    assert ds.train_y[9] == 0 and 10 in arrays["train"][1]  # label 10 is digit 0


@pytest.mark.parametrize("y_shape", ["column", "row", "float"])
def test_svhn_accepts_label_vector_layouts(tmp_path: Path, y_shape: str) -> None:
    write_svhn(tmp_path)
    x, y = svhn_arrays(6, 3)
    y = {"column": y, "row": y.reshape(1, -1), "float": y.astype(np.float64)}[y_shape]
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    assert torch.equal(load_svhn(tmp_path).train_y, torch.tensor([1, 2, 3, 4, 5, 6]))


def test_svhn_resize(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    ds = load_dataset("svhn", tmp_path, size=40)
    assert ds.train_x.shape == (12, 3, 40, 40) and ds.image_size == 40
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    plain = load_svhn(tmp_path)
    ref = torch.nn.functional.interpolate(plain.test_x, size=(40, 40), mode="bilinear",
                                          align_corners=False).clamp(0, 1)
    assert torch.equal(ds.test_x, ref)


def _svhn_fault(kind: str, root: Path) -> tuple[str, str]:
    """Break train_32x32.mat in one way; return (file name, expected message fragment)."""
    path = root / "train_32x32.mat"
    x, y = svhn_arrays(5, 0)
    if kind == "missing":
        path.unlink()
        return path.name, "no such file"
    if kind == "corrupt":
        path.write_bytes(b"\x00not a mat file\xff" * 20)
        return path.name, "MATLAB v5 .mat"
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
        return path.name, "MATLAB v5 .mat"
    content = {
        "wrong_x_shape": {"X": x[:, :, :, 0].astype(np.float64), "y": y},
        "wrong_x_dtype": {"X": x.astype(np.float32), "y": y},
        "missing_y": {"X": x},
        "count_mismatch": {"X": x, "y": y[:4]},
        "label_zero": {"X": x, "y": y - 1},
        "label_eleven": {"X": x, "y": y + 6},  # 7..11
    }[kind]
    scipy.io.savemat(path, content)
    fragment = {
        "wrong_x_shape": "expected 'X' of shape (H, H, 3, N) uint8, found (32, 32, 3) float64",
        "wrong_x_dtype": "expected 'X' of shape (H, H, 3, N) uint8, found (32, 32, 3, 5) float32",
        "missing_y": "'y' is missing",
        "count_mismatch": "expected 'y' of shape (5, 1)",
        "label_zero": "expected labels in 1..10",
        "label_eleven": "expected labels in 1..10",
    }[kind]
    return path.name, fragment


@pytest.mark.parametrize("kind", ["missing", "corrupt", "truncated", "wrong_x_shape", "wrong_x_dtype",
                                  "missing_y", "count_mismatch", "label_zero", "label_eleven"])
def test_svhn_errors_name_file_and_expectation(tmp_path: Path, kind: str) -> None:
    write_svhn(tmp_path)
    name, fragment = _svhn_fault(kind, tmp_path)
    with pytest.raises(DataFormatError) as info:
        load_svhn(tmp_path)
    message = str(info.value)
    assert name in message and fragment in message, message


# --------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_roundtrip(tmp_path: Path, gz: bool) -> None:
    arrays = mnist_arrays()
    write_mnist(tmp_path, arrays, gz=gz)
    ds = load_mnist(tmp_path)
    assert (ds.name, ds.in_channels, ds.image_size) == ("mnist", 1, 28)
    assert ds.train_x.shape == (7, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    assert torch.equal(ds.train_x[:, 0], expected_pixels(arrays["train_images"]))
    assert torch.equal(ds.test_x[:, 0], expected_pixels(arrays["test_images"]))
    assert ds.train_x[0, 0].flatten()[255] == 1.0 and ds.train_x[0, 0].flatten()[0] == 0.0
    assert torch.equal(ds.train_y, torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    assert torch.equal(ds.test_y, torch.from_numpy(arrays["test_labels"].astype(np.int64)))


def test_mnist_mixed_compression(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    for i, (key, name) in enumerate(MNIST_NAMES.items()):
        write_idx(tmp_path / (name + (".gz" if i % 2 else "")), idx_bytes(arrays[key]))
    assert torch.equal(load_dataset("mnist", str(tmp_path)).test_y,
                       torch.from_numpy(arrays["test_labels"].astype(np.int64)))


def test_read_idx_header_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 1, 0]) + bytes(range(256)) * 2)
    array = read_idx(path, expected_magic=0x00000802)
    assert array.shape == (2, 256) and array.dtype == np.uint8 and array[1, 255] == 255


def _mnist_fault(kind: str, root: Path, arrays: dict[str, np.ndarray]) -> tuple[str, str]:
    """Overwrite one MNIST file with a broken one; return (file name, expected message fragment)."""
    images, labels = arrays["train_images"], arrays["train_labels"]
    img, lab = MNIST_NAMES["train_images"], MNIST_NAMES["train_labels"]
    if kind == "missing":
        (root / lab).unlink()
        return lab, "found neither"
    if kind == "truncated":
        write_idx(root / img, idx_bytes(images)[:-10])
        return img, f"expected {images.size} payload bytes for dims (7, 28, 28), found {images.size - 10}"
    if kind == "trailing":
        write_idx(root / lab, idx_bytes(labels) + b"\x00")
        return lab, "expected 7 payload bytes for dims (7,), found 8"
    if kind == "truncated_header":
        write_idx(root / img, idx_bytes(images)[:9])
        return img, "expected a 16-byte header"
    if kind == "wrong_magic":
        write_idx(root / img, idx_bytes(labels))  # a labels file where images belong
        return img, "expected IDX magic 0x00000803 (uint8, 3-D), found 0x00000801"
    if kind == "wrong_dtype":
        write_idx(root / lab, idx_bytes(labels, magic=0x00000D01))  # 0x0D = float32
        return lab, "expected IDX magic 0x00000801 (uint8, 1-D), found 0x00000D01"
    if kind == "count_mismatch":
        write_idx(root / lab, idx_bytes(labels[:6]))
        return lab, "expected 7 labels (one per image in train-images-idx3-ubyte), found 6"
    if kind == "label_range":
        write_idx(root / lab, idx_bytes(labels + 5))
        return lab, "expected labels in 0..9"
    if kind == "wrong_size":
        write_idx(root / img, idx_bytes(images[:, :27, :27]))
        return img, "expected images of 28x28, found 27x27"
    if kind == "bad_gzip":
        (root / img).unlink()
        (root / f"{img}.gz").write_bytes(gzip.compress(idx_bytes(images))[:-20])
        return f"{img}.gz", "expected a gzip stream"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "truncated", "trailing", "truncated_header", "wrong_magic",
                                  "wrong_dtype", "count_mismatch", "label_range", "wrong_size", "bad_gzip"])
def test_mnist_errors_name_file_and_expectation(tmp_path: Path, kind: str) -> None:
    arrays = mnist_arrays()
    write_mnist(tmp_path, arrays)
    name, fragment = _mnist_fault(kind, tmp_path, arrays)
    with pytest.raises(DataFormatError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert name in message and fragment in message, message


# --------------------------------------------------------------------------- dispatch

def test_load_dataset_digits_ignores_path() -> None:
    ds = load_dataset("digits", "/nonexistent", seed=3)
    assert torch.equal(ds.test_y, load_digits(seed=3).test_y)


@pytest.mark.parametrize("name", ["svhn", "mnist"])
def test_load_dataset_requires_path(name: str) -> None:
    with pytest.raises(ValueError, match=r"--data PATH") as info:
        load_dataset(name)
    assert name in str(info.value)


def test_load_dataset_unknown_name() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10")
    assert "cifar10" in str(info.value) and all(n in str(info.value) for n in DATASETS)


def test_data_format_error_is_value_error() -> None:
    assert issubclass(DataFormatError, ValueError)


# --------------------------------------------------------------------------- mini-batches

@pytest.mark.parametrize("drop_last", [False, True])
def test_minibatches_cover_data_once(drop_last: bool) -> None:
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    batches = list(iterate_minibatches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0),
                                       drop_last=drop_last))
    assert [len(yb) for _, yb in batches] == ([4, 4] if drop_last else [4, 4, 2])
    seen = torch.cat([yb for _, yb in batches])
    assert torch.equal(torch.cat([xb for xb, _ in batches])[:, 0].long(), seen)
    if not drop_last:
        assert torch.equal(seen.sort().values, y)


def test_minibatches_deterministic() -> None:
    x, y = torch.randn(50, 3), torch.arange(50)

    def order(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([yb for _, yb in iterate_minibatches(x, y, 8, shuffle=True, generator=gen)])

    assert torch.equal(order(5), order(5)) and not torch.equal(order(5), order(6))
    plain = torch.cat([yb for _, yb in iterate_minibatches(x, y, 8, shuffle=False)])
    assert torch.equal(plain, y)


# --------------------------------------------------------------------------- empty splits (issue 9, item 6)

@pytest.mark.parametrize("split", ["train", "test"])
def test_svhn_split_with_no_samples_is_an_error(tmp_path: Path, split: str) -> None:
    write_svhn(tmp_path)
    path = tmp_path / f"{split}_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 0), dtype=np.uint8), "y": np.zeros((0, 1), dtype=np.uint8)})
    assert scipy.io.loadmat(path)["X"].shape == (32, 32, 3, 0)
    with pytest.raises(DataFormatError) as info:
        load_svhn(tmp_path)
    assert str(info.value).startswith(f"{path}: expected at least one sample, found none"), str(info.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_split_with_no_images_is_an_error(tmp_path: Path, split: str) -> None:
    arrays = mnist_arrays()
    arrays[f"{split}_images"] = arrays[f"{split}_images"][:0]
    arrays[f"{split}_labels"] = arrays[f"{split}_labels"][:0]
    write_mnist(tmp_path, arrays)
    path = tmp_path / MNIST_NAMES[f"{split}_images"]
    assert read_idx(path).shape == (0, 28, 28)  # a well-formed IDX file: only its emptiness is wrong
    with pytest.raises(DataFormatError) as info:
        load_mnist(tmp_path)
    assert str(info.value) == f"{path}: expected at least one image, found none"


def test_empty_split_through_the_cli(tmp_path: Path, capsys) -> None:
    from sw.cli import main

    arrays = mnist_arrays()
    arrays["test_images"], arrays["test_labels"] = arrays["test_images"][:0], arrays["test_labels"][:0]
    (tmp_path / "mnist").mkdir()
    write_mnist(tmp_path / "mnist", arrays)
    out = tmp_path / "run"
    assert main(["train", "--bits", "1,2,6", "--dataset", "mnist", "--data", str(tmp_path / "mnist"),
                 "--epochs", "1", "--width", "0.25", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"dorefa train: error: {tmp_path / 'mnist' / MNIST_NAMES['test_images']}: "
                   f"expected at least one image, found none\n")
    assert not out.exists()
