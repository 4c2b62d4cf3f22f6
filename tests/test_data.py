"""The prepared-dataset format, the embedded mnist5k, and the on-device batches."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dropreg.config import DatasetConfig, Normalization
from dropreg.data.datamodule import DeviceBatches, PreparedDataModule, epoch_permutation, normalize
from dropreg.data.embedded import prepare_mnist5k
from dropreg.data.prepared import (PreparedDataError, load_prepared, manifest_path, md5sum, npz_path,
                                   save_prepared)


def test_mnist5k_splits_are_stratified_and_disjoint(data_dir):
    data = load_prepared(data_dir, "mnist5k")
    counts = {s: len(y) for s, (_, y) in data.arrays.items()}
    assert counts == {"train": 3500, "val": 500, "test": 1000}
    for split, per_class in (("train", 350), ("val", 50), ("test", 100)):
        assert np.bincount(data.arrays[split][1]).tolist() == [per_class] * 10
        assert data.manifest["class_counts"][split] == [per_class] * 10
    digests = {s: {hashlib.sha1(im.tobytes()).hexdigest() for im in x} for s, (x, _) in data.arrays.items()}
    assert sum(len(d) for d in digests.values()) == len(set().union(*digests.values()))
    x = data.arrays["train"][0]
    assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and x.max() == 255
    assert data.manifest["split"]["seed"] == 20140601
    assert data.manifest["sources"][0]["md5"]


def test_preparation_is_byte_reproducible(data_dir, tmp_path):
    prepare_mnist5k(tmp_path)
    assert md5sum(npz_path(tmp_path, "mnist5k")) == md5sum(npz_path(data_dir, "mnist5k"))


def test_missing_or_altered_data_is_reported(tmp_path):
    with pytest.raises(PreparedDataError, match="mnist5k.npz: not found"):
        load_prepared(tmp_path, "mnist5k")
    x = np.zeros((4, 28, 28), np.uint8)
    save_prepared(tmp_path, "toy", {"train": (x, np.arange(4)), "test": (x, np.arange(4))}, {"sources": []})
    assert json.loads(manifest_path(tmp_path, "toy").read_text())["counts"] == {"train": 4, "val": 0, "test": 4}
    with open(npz_path(tmp_path, "toy"), "ab") as f:
        f.write(b"x")
    with pytest.raises(PreparedDataError, match="toy.npz: md5 .* differs"):
        load_prepared(tmp_path, "toy")
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_rejects_non_uint8(tmp_path):
    with pytest.raises(PreparedDataError, match="uint8"):
        save_prepared(tmp_path, "bad", {"train": (np.zeros((2, 28, 28)), np.zeros(2))}, {})
    assert not npz_path(tmp_path, "bad").exists()


def test_normalizations():
    x = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    assert normalize(x, Normalization.unit).tolist() == [[0.0, 1.0]]
    assert normalize(x, Normalization.centered).tolist() == [[-0.5, 0.5]]


def test_batches_cover_each_epoch_once_and_resume_exactly():
    x = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    it = iter(DeviceBatches(x, y, batch_size=3, seed=7))
    first = [next(it)[1] for _ in range(6)]  # 3 batches per epoch, last partial batch dropped
    epoch0 = torch.cat(first[:3])
    assert len(set(epoch0.tolist())) == 9
    assert not torch.equal(torch.cat(first[3:]), epoch0)  # reshuffled each epoch
    resumed = iter(DeviceBatches(x, y, batch_size=3, seed=7, start_update=4))
    assert torch.equal(next(resumed)[1], first[4])
    assert torch.equal(epoch_permutation(10, 7, 1), epoch_permutation(10, 7, 1))


def test_datamodule_merges_validation_and_takes_subsets(data_dir):
    merged = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(data_dir), use_validation=False), 100, 1000, 0)
    merged.setup()
    assert len(merged.tensors["train"][0]) == 4000 and merged.eval_splits == ["test"]
    small = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(data_dir), train_subset=500), 100, 1000, 0)
    small.setup()
    assert small.tensors["train"][0].shape == (500, 784) and small.eval_splits == ["val", "test"]
    too_big = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(data_dir), train_subset=9999), 100, 1000, 0)
    with pytest.raises(PreparedDataError, match="dataset.train_subset=9999"):
        too_big.setup()


def test_embedded_dataset_is_prepared_on_first_use(tmp_path):
    dm = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(tmp_path)), 100, 1000, 0)
    dm.prepare_data()
    assert manifest_path(tmp_path, "mnist5k").is_file()
