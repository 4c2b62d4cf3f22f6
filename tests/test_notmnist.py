"""notMNIST preparation from archives of real glyph PNGs (or generated ones when the sample is absent)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dropreg.data.notmnist import read_glyph_tar, remove_cross_split_duplicates
from dropreg.data.prepared import load_prepared
from dropreg.data.sources import RAW_FILES
from glyph_tar import LETTERS, glyphs, png_bytes, write_tar

PLANTED = 5  # images of the large archive that also appear in the small one


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    pool = glyphs(per_class=80)
    large = [(letter, f"large{i}.png", png_bytes(im)) for letter in LETTERS for i, im in enumerate(pool[letter][:60])]
    large += [("C", "broken.png", b"this is not a png"),
              ("H", "truncated.png", png_bytes(pool["H"][79])[:40])]
    small = [(letter, f"small{i}.png", png_bytes(im)) for letter in LETTERS for i, im in enumerate(pool[letter][60:80])]
    for k in range(PLANTED):  # replace 5 small glyphs by copies of large ones: cross-split duplicates
        letter = LETTERS[k]
        small[LETTERS.index(letter) * 20] = (letter, "dup.png", png_bytes(pool[letter][k]))
    write_tar(raw / "notMNIST_large.tar.gz", "notMNIST_large", large)
    write_tar(raw / "notMNIST_small.tar.gz", "notMNIST_small", small)
    return raw


def test_reader_skips_exactly_the_unreadable(archives):
    large = read_glyph_tar(archives / "notMNIST_large.tar.gz")
    assert len(large.labels) == 600 and np.bincount(large.labels).tolist() == [60] * 10
    assert [s.split(" ")[0] for s in large.skipped] == ["notMNIST_large/C/broken.png", "notMNIST_large/H/truncated.png"]
    assert large.images.dtype == np.uint8 and large.images.shape == (600, 28, 28)


def test_prepare_removes_exactly_the_planted_duplicates(archives, tmp_path):
    from dropreg.data.notmnist import prepare_notmnist

    files = tuple(type(f)(f.name, (), size=(archives / f.name).stat().st_size) for f in RAW_FILES["notmnist"])
    prepare_notmnist(files, archives, tmp_path, train_size=500, val_size=100, test_size=200, seed=3)
    data = load_prepared(tmp_path, "notmnist")
    m = data.manifest
    assert m["removed"]["exact_duplicates_of_earlier_splits"] == {"train": 0, "val": 0, "test": PLANTED}
    assert m["counts"] == {"train": 500, "val": 100, "test": 200 - PLANTED}
    assert len(m["skipped"]) == 2 and m["skipped"][0].startswith("notMNIST_large/C/broken.png")
    assert all(s["verified_by"] == "size (no md5 published)" and s["size_ok"] for s in m["sources"])
    assert "no md5 is published" in m["sources"][0]["note"]
    hashes = lambda x: {im.tobytes() for im in x}  # noqa: E731
    train, val, test = (hashes(data.arrays[s][0]) for s in ("train", "val", "test"))
    assert not (train & test) and not (val & test) and not (train & val)
    assert np.bincount(data.arrays["train"][1]).tolist() == [50] * 10


def test_cross_split_duplicates_leave_later_splits():
    a, b, c = (np.full((28, 28), v, np.uint8) for v in (1, 2, 3))
    splits = {"train": (np.stack([a, b]), np.array([0, 1], np.uint8)),
              "val": (np.stack([b, c, c]), np.array([1, 2, 2], np.uint8)),
              "test": (np.stack([a, c, b]), np.array([0, 2, 1], np.uint8))}
    removed = remove_cross_split_duplicates(splits)
    assert removed == {"train": 0, "val": 1, "test": 3}  # within-split repeats (c, c in val) stay
    assert len(splits["val"][0]) == 2 and len(splits["test"][0]) == 0


def test_memory_and_speed_on_50k_pngs(tmp_path):
    """Decoding a 50,000-PNG archive stays far below 2 GiB peak RSS; prints images/s."""
    rng = np.random.default_rng(0)
    pngs = [png_bytes(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(500)]
    members = [(LETTERS[i % 10], f"g{i}.png", pngs[i % 500]) for i in range(50_000)]
    tar = write_tar(tmp_path / "big.tar.gz", "notMNIST_large", members)
    script = textwrap.dedent(f"""
        import resource, time
        from dropreg.data.notmnist import read_glyph_tar
        t = time.perf_counter(); a = read_glyph_tar({str(tar)!r}); dt = time.perf_counter() - t
        print(len(a.labels), round(len(a.labels) / dt), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    n, per_second, peak_kib = map(int, out.split())
    print(f"notMNIST decode: {per_second} images/s, peak RSS {peak_kib / 1024:.0f} MiB for {n} PNGs")
    assert n == 50_000
    assert peak_kib < 2 * 1024 * 1024


def test_prepared_notmnist_trains(archives, tmp_path):
    from conftest import FAST
    from conftest import resolved
    from dropreg.data.notmnist import prepare_notmnist
    from dropreg.train import train

    files = tuple(type(f)(f.name, (), size=(archives / f.name).stat().st_size) for f in RAW_FILES["notmnist"])
    prepare_notmnist(files, archives, tmp_path, train_size=500, val_size=100, test_size=200, seed=3)
    cfg = resolved(*FAST, "dataset=notmnist", f"dataset.data_dir={tmp_path}", "optim.max_updates=50",
                   "trainer.eval_every=50")
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["config"]["dataset"]["normalization"] == "centered"
    assert summary["test_error"] < 90.0  # better than chance on ten letters
