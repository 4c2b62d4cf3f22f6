"""Where each dataset's raw files come from, with the checksums they are verified against."""

from __future__ import annotations

from .download import RemoteFile
from .notmnist import PER_LETTER, GlyphCheck

# MNIST: the files and md5 sums torchvision checks (torchvision/datasets/mnist.py), its mirror order
# (the ossci-datasets S3 mirror first, then the original site), then the CVDF GCS mirror.
# content_md5: md5 of the gunzipped files, as listed by TensorFlow Datasets and others.
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_MNIST = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
)

# Fashion-MNIST: official URLs and md5 sums from the dataset's README
# (github.com/zalandoresearch/fashion-mnist, "Get the Data"; the same in torchvision's FashionMNIST).
# content_md5 (of the gunzipped files) lets Debian's `dataset-fashion-mnist`, which ships recompressed
# copies under /usr/share/datasets/fashion-mnist/, serve as a local directory.
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_FASHION = (
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
)

# notMNIST (Udacity deep learning assignment 1). No md5 is published (the assignment checks sizes),
# and none could be established offline: sizes are verified and the manifest says so. A copy of another
# size (a repack) or the extracted folder (<local_dir>/[notmnist/]notMNIST_large/A/...) is accepted when
# its content checks (notmnist.GlyphCheck with the published per-letter counts, notmnist.PER_LETTER).
_NOTMNIST_MIRRORS = (
    "http://yaroslavvb.com/upload/notMNIST/",
    "https://commondatastorage.googleapis.com/books1000/",
)
_NOTMNIST = (("notMNIST_large.tar.gz", 247_336_696), ("notMNIST_small.tar.gz", 8_458_043))


def _files(table, mirrors) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, tuple(m + name for m in mirrors), md5, content) for name, md5, content in table)


RAW_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _files(_MNIST, _MNIST_MIRRORS),
    "fashion_mnist": _files(_FASHION, _FASHION_MIRRORS),
    "notmnist": tuple(RemoteFile(n, tuple(m + n for m in _NOTMNIST_MIRRORS), size=s,
                                 content_check=GlyphCheck(PER_LETTER[n.split(".")[0]]), folder=n.split(".")[0])
                      for n, s in _NOTMNIST),
}
