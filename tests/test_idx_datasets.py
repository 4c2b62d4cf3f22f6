"""IDX parsing, real MNIST served from loopback, prepared Fashion-MNIST from Debian's package."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from dropreg.data.cli import main as data_cli
from dropreg.data.download import DownloadOptions, fetch
from dropreg.data.idx import IMAGES_MAGIC, IdxError, read_idx
from dropreg.data.idx_datasets import prepare_idx_dataset
from dropreg.data.prepared import load_prepared
from dropreg.data.sources import RAW_FILES

MNIST_DIR = SHARED_DATA / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_idx_roundtrip_gz_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(read_idx(tmp_path / "a.idx", IMAGES_MAGIC), a)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), a)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:-5], "truncated: header announces 2x3x4 = 24 bytes of data, the file has 19"),
    (lambda b: b + b"\0", "too long"),
    (lambda b: b"\x1f\x8b" + b[2:], "not an IDX file"),
    (lambda b: b[:6], "truncated header"),
])
def test_idx_errors_are_clear(tmp_path, mangle, message):
    a = np.zeros((2, 3, 4), np.uint8)
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mangle(idx_bytes(a)))
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_and_wrong_magic(tmp_path):
    a = np.zeros((100, 28, 28), np.uint8)
    (tmp_path / "t.gz").write_bytes(gzip.compress(idx_bytes(a))[:-20])
    with pytest.raises(IdxError, match="truncated gzip"):
        read_idx(tmp_path / "t.gz")
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(IdxError, match="magic 0x0801, expected 0x0803"):
        read_idx(tmp_path / "labels", IMAGES_MAGIC)


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="../shared/data/mnist not present")
def test_real_mnist_from_loopback_verified_by_project_md5s(http_server, tmp_path):
    files = {f.name: f for f in RAW_FILES["mnist"]}
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    opts = DownloadOptions(retries=0, progress=False)
    for name in names:
        url = http_server.serve(f"/mnist/{name}", ("file", (MNIST_DIR / name).read_bytes()))
        real = files[name]  # the project's own md5 constant, with the loopback URL in front
        fetch(type(real)(name, (url,), real.md5, real.content_md5), tmp_path, "mnist", opts)
    images = read_idx(tmp_path / names[0], IMAGES_MAGIC)
    labels = read_idx(tmp_path / names[1])
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(read_idx(tmp_path / names[2])).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="../shared/data/mnist not present")
def test_mnist_preparation_holds_out_validation(tmp_path):
    """A quick split of the 10,000 test images standing in for the training set; the real 60,000 are
    split in test_real_data.py."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(MNIST_DIR / "t10k-images-idx3-ubyte.gz", raw / "train-images-idx3-ubyte.gz")
    shutil.copy(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", raw / "train-labels-idx1-ubyte.gz")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(MNIST_DIR / name, raw / name)
    prepare_idx_dataset("mnist", RAW_FILES["mnist"], raw, tmp_path, val_size=2000, seed=5)
    data = load_prepared(tmp_path, "mnist")
    assert data.manifest["counts"] == {"train": 8000, "val": 2000, "test": 10000}
    held_out = data.manifest["split"]["val_source_indices"]
    assert len(set(held_out)) == 2000 and data.manifest["split"]["seed"] == 5
    test_x = data.arrays["test"][0]
    assert np.array_equal(data.arrays["val"][0], test_x[held_out])
    verified = {s["file"]: s["verified_by"] for s in data.manifest["sources"]}
    assert verified["t10k-images-idx3-ubyte.gz"] == "md5"


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package(tmp_path, capsys):
    code = data_cli(["prepare", "fashion_mnist", f"download.local_dir={FASHION_DIR}",
                     f"raw_dir={tmp_path / 'raw'}", f"prepared_dir={tmp_path}"])
    assert code == 0, capsys.readouterr().err
    data = load_prepared(tmp_path, "fashion_mnist")
    train_y = np.concatenate([data.arrays["train"][1], data.arrays["val"][1]])
    assert len(train_y) == 60_000 and len(data.arrays["test"][1]) == 10_000
    assert np.bincount(train_y).tolist() == [6000] * 10
    assert np.bincount(data.arrays["test"][1]).tolist() == [1000] * 10
    assert {s["verified_by"] for s in data.manifest["sources"]} == {"md5 of the gunzipped content"}


def test_data_cli_rejects_bad_values_in_one_line(capsys):
    assert data_cli(["prepare", "notmnist", "notmnist.seed=-3"]) == 2
    assert capsys.readouterr().err.strip() == "dropreg.data: error: notmnist.seed=-3: allowed is a number >= 0"
