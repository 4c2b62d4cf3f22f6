"""The prepared-dataset format, the embedded mnist5k, and the on-device batches."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dropreg.schema import DatasetConfig, Normalization
from dropreg.batches import MemberBatches, PackBatches, epoch_permutation
from dropreg.data.datamodule import PreparedDataModule, normalize
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
    batches = MemberBatches(10, batch_size=3, seed=7)
    first = batches.indices(0, 6)  # 3 batches per epoch, last partial batch dropped
    epoch0 = first[:3].ravel()
    assert len(set(epoch0.tolist())) == 9
    assert not np.array_equal(first[3:].ravel(), epoch0)  # reshuffled each epoch
    assert np.array_equal(MemberBatches(10, 3, 7).indices(4, 2), first[4:6])  # from any update on
    assert torch.equal(epoch_permutation(10, 7, 1), epoch_permutation(10, 7, 1))


def test_pack_batches_are_each_members_own():
    pack = PackBatches([10, 6], batch_size=3, seeds=[7, 8]).indices(0, 4)
    assert pack.shape == (4, 2, 3)
    assert np.array_equal(pack[:, 0], MemberBatches(10, 3, 7).indices(0, 4))
    assert pack[:, 1].max() < 6  # a training subset: the first 6 examples only


def test_datamodule_merges_validation_and_checks_subsets(data_dir):
    from dropreg.schema import TrainConfig

    def run(**dataset) -> TrainConfig:
        from conftest import resolved
        from dropreg.schema import validate

        return validate(resolved(f"dataset.data_dir={data_dir}", *(f"dataset.{k}={v}" for k, v in dataset.items())))

    merged = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(data_dir), use_validation=False), 1000)
    merged.check([run()])
    merged.setup()
    assert len(merged.tensors["train"][0]) == 4000 and merged.eval_splits == ["test"] and merged.train_size == 4000
    dm = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(data_dir)), 1000)
    dm.check([run(train_subset=500)])
    assert dm.eval_splits == ["val", "test"] and dm.train_size == 3500
    with pytest.raises(PreparedDataError, match="dataset.train_subset=9999: allowed is at most 3500"):
        dm.check([run(train_subset=9999)])
    with pytest.raises(PreparedDataError, match="optim.batch_size=128: allowed is at most the 100 training examples"):
        dm.check([run(train_subset=100)])  # the Udacity optimizer's batch of 128


def test_embedded_dataset_is_prepared_on_first_use(tmp_path):
    dm = PreparedDataModule(DatasetConfig(name="mnist5k", data_dir=str(tmp_path)), 1000)
    dm.prepare_data()
    assert manifest_path(tmp_path, "mnist5k").is_file()
