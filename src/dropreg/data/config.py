"""The data CLI's configuration (conf/data.yaml): where files go, how to download, how to split."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from ..schema import check_ranges, non_negative, positive, without_hydra
from .download import DownloadOptions


@dataclass
class IdxSplitConfig:
    val_size: int = non_negative(10_000)  # training images held out for validation
    seed: int = non_negative(20140601)


@dataclass
class NotMNISTConfig:
    train_size: int = positive(200_000)
    val_size: int = positive(10_000)
    test_size: int = positive(10_000)
    seed: int = non_negative(133)


@dataclass
class DataConfig:
    raw_dir: str = "data/raw"  # downloads: <raw_dir>/<dataset>/<file>
    prepared_dir: str = "data/prepared"
    download: DownloadOptions = field(default_factory=DownloadOptions)
    mnist: IdxSplitConfig = field(default_factory=IdxSplitConfig)
    fashion_mnist: IdxSplitConfig = field(default_factory=IdxSplitConfig)
    notmnist: NotMNISTConfig = field(default_factory=NotMNISTConfig)


def load_data_config(overrides: list[str]) -> DataConfig:
    """Compose conf/data.yaml with overrides; validate ranges. Raises ConfigError / Hydra errors."""
    from hydra.core.config_store import ConfigStore

    from ..compose import compose

    ConfigStore.instance().store(name="data_schema", node=DataConfig)
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig),
                                              without_hydra(compose(overrides, config_name="data"))))
    check_ranges(obj)
    return obj
