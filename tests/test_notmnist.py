"""notMNIST preparation from archives and extracted folders of real glyph PNGs (or generated ones when
the sample is absent). notMNIST_large is not obtainable here: its path is tested on generated sets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

from dropreg.data import cli
from dropreg.data.download import FOLDER_CHECK
from dropreg.data.notmnist import GlyphCheck, read_glyphs, remove_cross_split_duplicates
from dropreg.data.prepared import PreparedDataError, load_prepared
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
    large = read_glyphs(archives / "notMNIST_large.tar.gz")
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
        import re, time
        from dropreg.data.notmnist import read_glyphs
        t = time.perf_counter(); a = read_glyphs({str(tar)!r}); dt = time.perf_counter() - t
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
        print(len(a.labels), round(len(a.labels) / dt), peak)
    """)
    # VmHWM is this process's own peak; getrusage's ru_maxrss is not: Linux carries the parent's
    # high-water mark across fork + exec, so under a large pytest process it read 2.3 GB in CI
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


def _extract(tar, into):
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / tar.name.split(".")[0]


def test_extracted_folder_reads_like_the_archive(archives, tmp_path):
    folder = _extract(archives / "notMNIST_large.tar.gz", tmp_path)
    a, b = read_glyphs(archives / "notMNIST_large.tar.gz"), read_glyphs(folder)
    assert b.skipped == a.skipped and len(b.labels) == 600
    glyph_set = lambda g: sorted(zip(g.labels.tolist(), (im.tobytes() for im in g.images)))  # noqa: E731
    assert glyph_set(a) == glyph_set(b)  # the same glyphs (the folder's in name order)


def _glyph_folder(root, per_letter=20, letters=LETTERS, seed=0):
    pool = glyphs(per_class=max(per_letter, 1), seed=seed)
    for letter in letters:
        (root / letter).mkdir(parents=True)
        for i, im in enumerate(pool.get(letter, pool["A"])[:per_letter]):
            (root / letter / f"g{i}.png").write_bytes(png_bytes(im))
    return root


@pytest.mark.parametrize("spoil, problem", [
    (lambda d: shutil.rmtree(d / "J"),
     "9 folders of PNGs (ABCDEFGHI; missing J), expected exactly the ten letter folders A-J"),
    (lambda d: _glyph_folder(d / "K", 1, letters="."),
     "11 folders of PNGs (ABCDEFGHIJK; not a letter A-J: K), expected exactly the ten letter folders A-J"),
    (lambda d: [p.unlink() for p in sorted((d / "C").iterdir())[:12]],
     "glyphs per letter C 8; the published set has 18-22 per letter"),
    (lambda d: (d / "E" / "big.png").write_bytes(png_bytes(np.zeros((32, 28), np.uint8))),
     "1 glyph(s) not 28x28 8-bit grayscale PNG, e.g. notMNIST_small/E/big.png is 28x32, bit depth 8, colour type 0"),
])
def test_content_check_names_what_is_wrong(tmp_path, spoil, problem):
    folder = _glyph_folder(tmp_path / "notMNIST_small")
    check = GlyphCheck((18, 22))
    ok, numbers = check(folder)
    assert ok is None and numbers["glyphs_per_letter"] == dict.fromkeys(LETTERS, 20)
    spoil(folder)
    assert check(folder)[0] == problem
    tar = write_tar(tmp_path / "repack.tar.gz", "notMNIST_small",
                    [(p.parent.name, p.name, p.read_bytes()) for p in sorted(folder.rglob("*.png"))])
    assert check(tar)[0] == problem  # the same verdict for the archive


def _stand_ins(monkeypatch, per_large, per_small):
    """The sources table with per-letter ranges that fit the generated sets."""
    large, small = RAW_FILES["notmnist"]
    table = tuple(type(f)(f.name, (), size=f.size, content_check=GlyphCheck((n, n)), folder=f.folder)
                  for f, n in ((large, per_large), (small, per_small)))
    monkeypatch.setitem(cli.RAW_FILES, "notmnist", table)
    return table


def test_extracted_folders_prepare_in_place(tmp_path, monkeypatch):
    """download.local_dir holding notMNIST_large/ and notMNIST_small/ as users extract them: read in
    place, recorded in files.json with their content checks, nothing copied into raw/. Both sets are
    generated (notMNIST_large is not obtainable here)."""
    local = tmp_path / "local"
    _glyph_folder(local / "notMNIST_large", 60)
    _glyph_folder(local / "notMNIST_small", 20, seed=1)
    _stand_ins(monkeypatch, 60, 20)
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    assert cli.main(["prepare", "notmnist", f"download.local_dir={local}", f"raw_dir={raw}",
                     f"prepared_dir={prepared}", "notmnist.train_size=500", "notmnist.val_size=100",
                     "notmnist.test_size=200"]) == 0
    files = json.loads((raw / "notmnist" / "files.json").read_text())["files"]
    assert [(e["file"], e["folder"], e["verified_by"]) for e in files] == [
        ("notMNIST_large.tar.gz", str(local / "notMNIST_large"), FOLDER_CHECK),
        ("notMNIST_small.tar.gz", str(local / "notMNIST_small"), FOLDER_CHECK)]
    assert files[1]["content_check"]["glyphs_per_letter"] == dict.fromkeys(LETTERS, 20)
    assert [p.name for p in (raw / "notmnist").iterdir()] == ["files.json"]
    m = load_prepared(prepared, "notmnist").manifest
    assert [(s["folder"], s["verified_by"]) for s in m["sources"]] == [(e["folder"], FOLDER_CHECK) for e in files]
    assert m["sources"][0]["content_check"]["allowed_per_letter"] == [60, 60]
    assert m["counts"]["train"] == 500 and m["exact_duplicates_within_split"] == {"train": 0, "val": 0, "test": 0}


def test_wrong_folder_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    local = tmp_path / "local"
    _glyph_folder(local / "notmnist" / "notMNIST_large", 6)
    _glyph_folder(local / "notmnist" / "notMNIST_small", 2, letters=LETTERS[:9])
    files = _stand_ins(monkeypatch, 6, 2)
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    assert cli.main(["prepare", "notmnist", f"download.local_dir={local}", "download.retries=0",
                     f"raw_dir={raw}", f"prepared_dir={prepared}"]) == 1
    err = capsys.readouterr().err.strip()
    small = local / "notmnist" / "notMNIST_small"
    assert "\n" not in err and err.startswith("dropreg.data: error: notMNIST_small.tar.gz: no source delivered")
    assert f"{small}/ (9 folders of PNGs (ABCDEFGHI; missing J)" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and local not in p.parents]
    with pytest.raises(PreparedDataError) as info:  # the same check when prepare is given the folder
        from dropreg.data.notmnist import prepare_notmnist
        prepare_notmnist(files, raw, prepared, 50, 10, 10, seed=0,
                         paths={"notMNIST_large.tar.gz": local / "notmnist" / "notMNIST_large",
                                "notMNIST_small.tar.gz": small})
    assert str(info.value).startswith(f"{small}: 9 folders of PNGs (ABCDEFGHI; missing J)")
    assert not prepared.exists()
