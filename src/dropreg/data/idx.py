"""A strict reader of the IDX format of MNIST and Fashion-MNIST (gzipped or not).

Header: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, then each
dimension as a big-endian uint32. The file must hold exactly the bytes the header announces.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801  # uint8 with 3 dims, uint8 with 1 dim


class IdxError(ValueError):
    """A file that is not a (complete) IDX file."""


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IdxError(f"{path}: damaged or truncated gzip stream ({exc})") from exc
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _DTYPES or data[3] == 0:
        raise IdxError(f"{path}: not an IDX file (first bytes {data[:4].hex() or 'none'})")
    magic, ndim = int.from_bytes(data[2:4], "big"), data[3]
    if expect_magic is not None and magic != expect_magic:
        raise IdxError(f"{path}: IDX magic 0x{magic:04x}, expected 0x{expect_magic:04x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header ({len(data)} bytes, header needs {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        state = "truncated" if len(data) - header < expected else "too long"
        raise IdxError(f"{path}: {state}: header announces {'x'.join(map(str, dims))} = {expected} bytes "
                       f"of data, the file has {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
