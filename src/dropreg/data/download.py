"""Fetch raw files from a list of mirrors, verify them, and write them atomically into data/raw/.

Order of sources for each file: a local directory (pre-downloaded files, or an archive's extracted
folder, used in place), a site mirror, then the file's own mirrors. Transient failures (connection
errors, timeouts, HTTP 5xx/429, a connection dropped halfway) are retried with exponential backoff;
anything else moves on to the next source.
Bytes are streamed to a temporary file and renamed only once verified, so a failed or interrupted
download never leaves a file under its final name. A file already present and valid is not fetched.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .. import __version__
from ..atomic import atomic_path
from ..schema import non_negative, positive
from .prepared import md5sum

_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    name: str
    urls: tuple[str, ...]
    md5: Optional[str] = None  # of the file as published
    # md5 of the gunzipped content: also accepts a recompressed copy of the same data (Debian's)
    content_md5: Optional[str] = None
    size: Optional[int] = None  # checked when no md5 is known
    # for a file without md5, a copy of another size (a repack) or an extracted `folder` is accepted
    # when content_check(path) -> (problem or None, the numbers it checked) finds no problem
    content_check: Optional[Callable[[Path], tuple[Optional[str], dict[str, Any]]]] = None
    # the archive's extracted folder, used in place (never copied) from <local_dir>/[<dataset>/]<folder>
    folder: Optional[str] = None


@dataclass
class DownloadOptions:
    """How to fetch: also the `download` group of conf/data.yaml (ranges checked when composed)."""

    local_dir: Optional[str] = None  # look here first: <local_dir>/<dataset>/<name> or <local_dir>/<name>
    mirror: Optional[str] = None  # a site mirror tried before the official ones: <mirror>/<dataset>/<name>
    retries: int = non_negative(3)  # extra attempts per URL after a transient failure
    backoff_s: float = non_negative(1.0)  # wait backoff_s * 2**attempt between attempts
    timeout_s: float = positive(60.0)
    progress: bool = True


class DownloadError(RuntimeError):
    """No source delivered a valid copy of a file; the message lists every source and its reason."""


class _Transient(Exception):
    pass


# what `verified_by` says in files.json and manifests
PUBLISHED_SIZE = "size (no md5 published)"
CONTENT_CHECK = "content check (not the published size)"
FOLDER_CHECK = "content check of an extracted folder"


@dataclass(frozen=True)
class Verified:
    problem: Optional[str]  # None: a valid copy
    how: str  # the check it passed or failed
    content: Optional[dict[str, Any]] = None  # the content check's numbers, when one ran


def verify(path: Path, f: RemoteFile) -> tuple[Optional[str], str]:
    """(problem or None, how it was verified)."""
    v = verify_source(path, f)
    return v.problem, v.how


def verify_source(path: str | Path, f: RemoteFile) -> Verified:
    """Check a copy of `f`: a file, or (for an archive with a `folder`) an extracted folder."""
    path = Path(path)
    if path.is_dir():
        if not (f.folder and f.content_check):
            return Verified(f"a folder, {f.name} is a file", "none")
        return _checked(path, f, FOLDER_CHECK, "")
    if f.md5:
        actual = md5sum(path)
        if actual == f.md5:
            return Verified(None, "md5")
        if f.content_md5 and f.name.endswith(".gz"):
            try:
                content = _gunzip_md5(path)
            except (OSError, EOFError):
                content = None
            if content == f.content_md5:
                return Verified(None, "md5 of the gunzipped content")
        return Verified(f"md5 {actual}, expected {f.md5}", "md5")
    if f.size is not None:
        size = path.stat().st_size
        if size == f.size:
            return Verified(None, PUBLISHED_SIZE)
        if not f.content_check:
            return Verified(f"size {size} bytes, expected {f.size}", PUBLISHED_SIZE)
        return _checked(path, f, CONTENT_CHECK, f"size {size} bytes, not the published {f.size}; content check: ")
    return Verified(None, "none")


# content checks run in this process: `prepare` downloads (verifies), records files.json and writes
# the manifest, and a folder of half a million PNGs should be scanned once for all three
_CHECKED: dict[tuple, Verified] = {}


def _checked(path: Path, f: RemoteFile, how: str, prefix: str) -> Verified:
    st = path.stat()
    key: tuple = (str(path.resolve()), st.st_size, st.st_mtime_ns, f.content_check)
    if path.is_dir():  # adding or removing a file changes its letter folder's mtime
        key += tuple((c.name, c.stat().st_mtime_ns) for c in sorted(path.iterdir()))
    if key not in _CHECKED:
        problem, numbers = f.content_check(path)
        _CHECKED[key] = Verified(problem and f"{prefix}{problem}", how, numbers)
    return _CHECKED[key]


def _gunzip_md5(path: Path) -> str:
    h = hashlib.md5()
    with gzip.open(path, "rb") as g:
        while block := g.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _stream(url: str, dest: Path, opts: DownloadOptions, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"dropreg/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=opts.timeout_s) as response, open(dest, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            from tqdm import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=False,
                      disable=None if opts.progress else True) as bar:
                got = 0
                while block := response.read(_CHUNK):
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
            if total is not None and got != total:
                raise _Transient(f"connection closed after {got} of {total} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code}") from exc
        raise DownloadError(f"HTTP {exc.code}") from exc
    except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    except urllib.error.URLError as exc:
        raise _Transient(f"{exc.reason}") from exc


def _local_candidates(f: RemoteFile, dataset: str, opts: DownloadOptions) -> list[tuple[Path, bool]]:
    """(path, is the extracted folder) in the order tried; files first."""
    if not opts.local_dir:
        return []
    base = Path(opts.local_dir)
    names = [(f.name, False)] + ([(f.folder, True)] if f.folder else [])
    return [(where / name, folder) for name, folder in names for where in (base / dataset, base)]


def _grouped(tried: list[tuple[str, str]]) -> str:
    """'a, b (not found), c (md5 ...)': consecutive paths with the same reason share it."""
    parts: list[str] = []
    for i, (path, reason) in enumerate(tried):
        last = i + 1 == len(tried) or tried[i + 1][1] != reason
        parts.append(f"{path} ({reason})" if last else path)
    return ", ".join(parts)


def fetch(f: RemoteFile, dest_dir: str | Path, dataset: str, opts: DownloadOptions | None = None) -> Path:
    """Return `dest_dir/f.name`, verified, fetching it if needed; or, when `f.folder` is found in the
    local directory and its content checks, that folder itself. Raises DownloadError."""
    opts = opts or DownloadOptions()
    final = Path(dest_dir) / f.name
    if final.is_file():
        problem, _ = verify(final, f)
        if problem is None:
            return final
        print(f"dropreg.data: {final}: {problem}; fetching it again", file=sys.stderr)

    failures: list[str] = []
    tried: list[tuple[str, str]] = []
    for local, folder in _local_candidates(f, dataset, opts):
        shown = f"{local}/" if folder else str(local)
        if not local.exists() or local.is_dir() != folder:
            tried.append((shown, "not found" if not local.exists() else "a folder" if local.is_dir() else "a file"))
            continue
        problem = verify_source(local, f).problem
        if problem is None and folder:
            return local
        if problem is None:
            with atomic_path(final) as tmp:
                shutil.copyfile(local, tmp)
            return final
        tried.append((shown, problem))
    if opts.local_dir:
        missing = "" if Path(opts.local_dir).is_dir() else " (no such directory)"
        failures.append(f"looked in local_dir={opts.local_dir}{missing}: {_grouped(tried)}")

    urls = ([f"{opts.mirror.rstrip('/')}/{dataset}/{f.name}"] if opts.mirror else []) + list(f.urls)
    for url in urls:
        reason = "not tried"
        for attempt in range(opts.retries + 1):
            try:
                with atomic_path(final) as tmp:
                    _stream(url, tmp, opts, f.name)
                    problem, _ = verify(tmp, f)
                    if problem:
                        raise DownloadError(problem)  # a bad copy: no retry, next mirror
                return final
            except _Transient as exc:
                reason = str(exc)
                if attempt < opts.retries:
                    time.sleep(opts.backoff_s * 2 ** attempt)
            except DownloadError as exc:
                reason = str(exc)
                break
        failures.append(f"{url} ({reason})")
    raise DownloadError(f"{f.name}: no source delivered a valid copy: " + "; ".join(failures)
                        + " (offline? the demo preset needs no download: "
                          "snakemake --cores 2 --config preset=demo)")
