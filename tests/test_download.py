"""The downloader against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from dropreg.data.download import DownloadError, DownloadOptions, RemoteFile, fetch

PAYLOAD = bytes(range(256)) * 400
MD5 = hashlib.md5(PAYLOAD).hexdigest()
FAST = DownloadOptions(retries=2, backoff_s=0.0, timeout_s=5, progress=False)


def remote(*urls: str, **kw) -> RemoteFile:
    return RemoteFile("payload.bin", tuple(urls), md5=kw.pop("md5", MD5), **kw)


def leftovers(d):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_success(http_server, tmp_path):
    url = http_server.serve("/a/payload.bin", ("file", PAYLOAD))
    path = fetch(remote(url), tmp_path, "toy", FAST)
    assert path == tmp_path / "payload.bin" and path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["payload.bin"]


def test_first_mirror_failing_uses_second(http_server, tmp_path):
    bad = http_server.serve("/bad/payload.bin", ("status", 404))
    good = http_server.serve("/good/payload.bin", ("file", PAYLOAD))
    fetch(remote(bad, good), tmp_path, "toy", FAST)
    assert http_server.requests == ["/bad/payload.bin", "/good/payload.bin"]  # 404: no retry


def test_transient_failures_are_retried(http_server, tmp_path):
    url = http_server.serve("/p", ("status", 500), ("drop", PAYLOAD), ("file", PAYLOAD))
    fetch(remote(url), tmp_path, "toy", FAST)
    assert http_server.requests == ["/p"] * 3
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_corrupted_bytes_name_file_and_both_sums(http_server, tmp_path):
    url = http_server.serve("/p", ("corrupt", PAYLOAD))
    with pytest.raises(DownloadError) as info:
        fetch(remote(url), tmp_path, "toy", FAST)
    message = str(info.value)
    corrupt_md5 = hashlib.md5(_corrupted(PAYLOAD)).hexdigest()
    assert message.startswith("payload.bin:") and MD5 in message and corrupt_md5 in message
    assert "\n" not in message
    assert leftovers(tmp_path) == []  # nothing under the final name, no temporary file


def _corrupted(body: bytes) -> bytes:
    body = bytearray(body)
    for i in range(0, len(body), max(1, len(body) // 7)):
        body[i] ^= 0xFF
    return bytes(body)


def test_all_mirrors_failing_lists_every_url(http_server, tmp_path):
    urls = [http_server.serve("/x", ("status", 404)), http_server.serve("/y", ("status", 503)),
            http_server.serve("/z", ("drop", PAYLOAD))]
    with pytest.raises(DownloadError) as info:
        fetch(remote(*urls), tmp_path, "toy", FAST)
    message = str(info.value)
    for url, reason in zip(urls, ["HTTP 404", "HTTP 503", "connection closed after"]):
        assert f"{url} ({reason}" in message
    assert http_server.requests.count("/y") == 3 and http_server.requests.count("/x") == 1
    assert leftovers(tmp_path) == []


def test_present_file_is_not_fetched_again(http_server, tmp_path):
    (tmp_path / "payload.bin").write_bytes(PAYLOAD)
    fetch(remote(http_server.serve("/p", ("file", PAYLOAD))), tmp_path, "toy", FAST)
    assert http_server.requests == []


def test_present_file_with_wrong_md5_is_reported_and_replaced(http_server, tmp_path, capsys):
    (tmp_path / "payload.bin").write_bytes(b"stale")
    fetch(remote(http_server.serve("/p", ("file", PAYLOAD))), tmp_path, "toy", FAST)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert "expected " + MD5 in capsys.readouterr().err


def test_site_mirror_is_tried_first(http_server, tmp_path):
    http_server.serve("/site/toy/payload.bin", ("file", PAYLOAD))
    official = http_server.serve("/official/payload.bin", ("file", PAYLOAD))
    opts = DownloadOptions(mirror=http_server.url("/site"), retries=0, progress=False)
    fetch(remote(official), tmp_path, "toy", opts)
    assert http_server.requests == ["/site/toy/payload.bin"]


def test_local_directory_is_used_without_network(http_server, tmp_path):
    local = tmp_path / "local"
    (local / "toy").mkdir(parents=True)
    (local / "toy" / "payload.bin").write_bytes(PAYLOAD)
    opts = DownloadOptions(local_dir=str(local), retries=0, progress=False)
    out = fetch(remote(http_server.serve("/p", ("file", PAYLOAD))), tmp_path / "raw", "toy", opts)
    assert out.read_bytes() == PAYLOAD and http_server.requests == []


def test_recompressed_local_copy_is_accepted_by_content_md5(tmp_path):
    published = gzip.compress(PAYLOAD, mtime=1)
    recompressed = gzip.compress(PAYLOAD, compresslevel=1, mtime=2)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "payload.bin.gz").write_bytes(recompressed)
    f = RemoteFile("payload.bin.gz", (), md5=hashlib.md5(published).hexdigest(), content_md5=MD5)
    out = fetch(f, tmp_path / "raw", "toy", DownloadOptions(local_dir=str(tmp_path / "local"), progress=False))
    assert gzip.decompress(out.read_bytes()) == PAYLOAD


def test_size_is_checked_when_no_md5_is_known(http_server, tmp_path):
    url = http_server.serve("/p", ("file", PAYLOAD[:-1]))
    with pytest.raises(DownloadError, match=f"size {len(PAYLOAD) - 1} bytes, expected {len(PAYLOAD)}"):
        fetch(RemoteFile("payload.bin", (url,), size=len(PAYLOAD)), tmp_path, "toy", FAST)


def test_local_dir_and_mirror_come_from_environment(monkeypatch):
    from dropreg.data.config import load_data_config

    monkeypatch.delenv("DROPREG_LOCAL_DATA", raising=False)
    monkeypatch.delenv("DROPREG_MIRROR", raising=False)
    plain = load_data_config([])
    assert plain.download.local_dir is None and plain.download.mirror is None
    monkeypatch.setenv("DROPREG_LOCAL_DATA", "/srv/datasets")
    monkeypatch.setenv("DROPREG_MIRROR", "http://127.0.0.1:9/mirror")
    cfg = load_data_config([])
    assert cfg.download.local_dir == "/srv/datasets" and cfg.download.mirror == "http://127.0.0.1:9/mirror"
    assert load_data_config(["download.local_dir=/elsewhere"]).download.local_dir == "/elsewhere"


def test_mistyped_local_dir_is_named_before_the_urls(http_server, tmp_path):
    typo = tmp_path / "dataz"
    url = http_server.serve("/p", ("status", 404))
    with pytest.raises(DownloadError) as info:
        fetch(remote(url), tmp_path / "raw", "toy", DownloadOptions(local_dir=str(typo), retries=0, progress=False))
    message = str(info.value)
    looked = (f"looked in local_dir={typo} (no such directory): {typo}/toy/payload.bin, "
              f"{typo}/payload.bin (not found); ")
    assert looked in message and message.index(looked) < message.index(url) and "\n" not in message


def test_bad_local_copy_is_named_with_its_reason(http_server, tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "payload.bin").write_bytes(b"stale")
    url = http_server.serve("/p", ("status", 404))
    with pytest.raises(DownloadError) as info:
        fetch(remote(url), tmp_path / "raw", "toy", DownloadOptions(local_dir=str(tmp_path / "local"), retries=0,
                                                                    progress=False))
    local = tmp_path / "local"
    assert (f"looked in local_dir={local}: {local}/toy/payload.bin (not found), {local}/payload.bin "
            f"(md5 {hashlib.md5(b'stale').hexdigest()}, expected {MD5}); {url} (HTTP 404)") in str(info.value)


def _count_check(path):
    """A content check for the tests: a folder (or file) passes when it holds exactly 3 files."""
    n = len(list(path.iterdir())) if path.is_dir() else 0
    return (None if n == 3 else f"{n} files, expected 3"), {"files": n}


def test_extracted_folder_is_used_in_place_when_its_content_checks(tmp_path):
    from dropreg.data.download import FOLDER_CHECK, verify_source

    folder = tmp_path / "local" / "toy" / "payload"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"x")
    f = RemoteFile("payload.tar.gz", (), size=10 ** 6, content_check=_count_check, folder="payload")
    out = fetch(f, tmp_path / "raw", "toy", DownloadOptions(local_dir=str(tmp_path / "local"), progress=False))
    assert out == folder and not (tmp_path / "raw").exists()  # nothing copied
    assert verify_source(out, f).how == FOLDER_CHECK and verify_source(out, f).content == {"files": 3}


def test_folder_with_wrong_content_is_named_with_what_is_wrong(tmp_path):
    local = tmp_path / "local"
    (local / "payload").mkdir(parents=True)
    (local / "payload" / "0.png").write_bytes(b"x")
    f = RemoteFile("payload.tar.gz", (), size=10 ** 6, content_check=_count_check, folder="payload")
    with pytest.raises(DownloadError) as info:
        fetch(f, tmp_path / "raw", "toy", DownloadOptions(local_dir=str(local), progress=False))
    assert (f"looked in local_dir={local}: {local}/toy/payload.tar.gz, {local}/payload.tar.gz, "
            f"{local}/toy/payload/ (not found), {local}/payload/ (1 files, expected 3)") in str(info.value)
    assert leftovers(tmp_path / "raw") == []


def test_archive_of_another_size_is_accepted_by_its_content_check(tmp_path):
    from dropreg.data.download import CONTENT_CHECK, verify_source

    (tmp_path / "a.tar.gz").write_bytes(PAYLOAD)
    f = RemoteFile("a.tar.gz", (), size=len(PAYLOAD) + 1, content_check=lambda p: (None, {"checked": str(p)}))
    v = verify_source(tmp_path / "a.tar.gz", f)
    assert v.problem is None and v.how == CONTENT_CHECK and v.content == {"checked": str(tmp_path / "a.tar.gz")}
    bad = RemoteFile("a.tar.gz", (), size=len(PAYLOAD) + 1, content_check=lambda p: ("no letters", {}))
    assert verify_source(tmp_path / "a.tar.gz", bad).problem == (
        f"size {len(PAYLOAD)} bytes, not the published {len(PAYLOAD) + 1}; content check: no letters")
