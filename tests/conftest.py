"""Shared fixtures: one prepared mnist5k per test session, and a helper to compose run configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from dropreg.compose import Composer
from dropreg.schema import as_container, validate

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# a fast, well-conditioned run: the Udacity net with N(0, 1/fan_in) init on mnist5k
FAST = ["model=udacity_mlp", "model.init=lecun_normal", "optim=demo", "trainer=cpu"]

warnings.filterwarnings("ignore", message=".*LeafSpec.*")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    from dropreg.data.embedded import prepare_mnist5k

    d = tmp_path_factory.mktemp("prepared")
    prepare_mnist5k(d)
    return d


_COMPOSE = Composer()


def resolved(*overrides: str) -> dict:
    """The resolved, validated config of a run (what train() takes) from Hydra overrides."""
    return as_container(validate(_COMPOSE(list(overrides))))


@pytest.fixture
def make_cfg(data_dir):
    """resolved(overrides) with the session's prepared data."""

    def make(*overrides: str) -> dict:
        return resolved(f"dataset.data_dir={data_dir}", *overrides)

    return make


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 that serves what the test scripts (see loopback_server.py)."""
    from loopback_server import LoopbackServer

    with LoopbackServer() as server:
        yield server


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Tests may talk to 127.0.0.1 only: any other host name fails at once, before a packet is sent."""
    import socket

    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"test network guard: {host} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
