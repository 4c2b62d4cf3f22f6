"""Typed Hydra configuration: one dataclass per config group, with each field's allowed range beside it.

Hydra/OmegaConf check key names and types while composing (an unknown key or a wrong enum value
fails there); `validate` then checks every value against the range declared in its field's metadata,
so a bad value fails before any training with one line naming the key, the value and what is allowed.
`validate` is the one way in (a composed config, a dict or dataclasses -> checked dataclasses) and
`as_container` the one way out (dataclasses -> the plain dict specs, checkpoints and summaries hold).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from .errors import ConfigError

# ----------------------------------------------------------------------------- range declarations
def _spec(default: Any, check: Callable[[Any], bool], allowed: str, **kw: Any) -> Any:
    return field(default=default, metadata={"check": check, "allowed": allowed}, **kw)


def positive(default: Any = MISSING) -> Any:
    return _spec(default, lambda v: v > 0, "a number > 0")


def non_negative(default: Any = MISSING) -> Any:
    return _spec(default, lambda v: v >= 0, "a number >= 0")


def unit_interval(default: Any, *, low_open: bool, high_open: bool) -> Any:
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    check = lambda v: (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)  # noqa: E731
    return _spec(default, check, f"a number in {lo}0, 1{hi}")


def optional_positive(default: Any = None) -> Any:
    return _spec(default, lambda v: v is None or v > 0, "null or a number > 0")


def positive_list() -> Any:
    return _spec(MISSING, lambda v: len(v) > 0 and all(w > 0 for w in v), "a non-empty list of integers > 0")


def one_of(default: str, *allowed: str) -> Any:
    return _spec(default, lambda v: v in allowed, "one of " + ", ".join(allowed))


MAX_SEED = 2**32 - 1  # numpy's SeedSequence and Lightning take 32-bit seeds


# ----------------------------------------------------------------------------- enums
class Activation(str, Enum):
    relu = "relu"
    logistic = "logistic"


class Init(str, Enum):
    normal = "normal"  # N(0, init_std^2)
    lecun_normal = "lecun_normal"  # N(0, 1/fan_in)
    truncated_normal = "truncated_normal"  # TensorFlow's truncated_normal(stddev=init_std): cut at 2 std


class Normalization(str, Enum):
    unit = "unit"  # x / 255 -> [0, 1]
    centered = "centered"  # (x - 127.5) / 255 -> [-0.5, 0.5], as in the Udacity notMNIST assignment


class L2Form(str, Enum):
    sum = "sum"  # Keras L2(l2=λ): λ Σ w²
    half_sum = "half_sum"  # TensorFlow λ · tf.nn.l2_loss(w) = λ · ½ Σ w²


class LRSchedule(str, Enum):
    constant = "constant"
    inverse_time = "inverse_time"  # lr0 / (1 + t / T)


class MomentumSchedule(str, Enum):
    constant = "constant"
    ramp = "ramp"  # m_f - (m_f - m_i) exp(-t / T), as in the paper author's deepnet code


class CudaGraph(str, Enum):
    auto = "auto"  # capture the update as a CUDA graph when training on a CUDA device
    on = "on"  # the same, but fail if the device is not CUDA
    off = "off"  # eager updates everywhere


# ----------------------------------------------------------------------------- groups
@dataclass
class DatasetConfig:
    name: str = MISSING
    data_dir: str = "data/prepared"  # holds <name>.npz and <name>.manifest.json
    normalization: Normalization = Normalization.unit
    # false: merge the validation split into training, as the paper's final runs do (no val/error then)
    use_validation: bool = True
    train_subset: Optional[int] = optional_positive()  # first N training examples only (None: all)
    input_dim: int = positive(784)
    num_classes: int = _spec(10, lambda v: v >= 2, "an integer >= 2")


@dataclass
class ModelConfig:
    name: str = MISSING
    hidden: list[int] = positive_list()
    activation: Activation = Activation.relu
    init: Init = Init.lecun_normal
    init_std: float = positive(0.01)  # used by `normal` and `truncated_normal`


@dataclass
class L2Config:
    weight: float = non_negative(0.0)  # λ; 0 switches the penalty off
    form: L2Form = L2Form.sum
    include_biases: bool = False


@dataclass
class L1Config:
    weight: float = non_negative(0.0)  # λ in λ Σ|w|
    include_biases: bool = False
    # L1 is active from this fraction of the update budget on (0: from the start; the paper's
    # "L2 + L1 applied towards the end of training" uses a late start)
    start_fraction: float = unit_interval(0.0, low_open=False, high_open=True)


@dataclass
class KLSparsityConfig:
    weight: float = non_negative(0.0)  # β
    target: float = unit_interval(0.05, low_open=True, high_open=True)  # ρ


@dataclass
class MaxNormConfig:
    radius: Optional[float] = optional_positive()  # c; None: no constraint


@dataclass
class DropoutConfig:
    # *retain* probabilities, as in the paper (p = 0.8 inputs, 0.5 hidden); 1.0 = no dropout
    input_retain: float = unit_interval(1.0, low_open=True, high_open=False)
    hidden_retain: float = unit_interval(1.0, low_open=True, high_open=False)


@dataclass
class RegularizerConfig:
    name: str = "none"
    l2: L2Config = field(default_factory=L2Config)
    l1: L1Config = field(default_factory=L1Config)
    kl_sparsity: KLSparsityConfig = field(default_factory=KLSparsityConfig)
    max_norm: MaxNormConfig = field(default_factory=MaxNormConfig)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = positive()
    lr_schedule: LRSchedule = LRSchedule.constant
    lr_decay_updates: float = positive(10_000.0)  # T of the inverse-time decay
    momentum: float = unit_interval(0.0, low_open=False, high_open=True)  # constant, or m_i of the ramp
    momentum_schedule: MomentumSchedule = MomentumSchedule.constant
    final_momentum: float = unit_interval(0.0, low_open=False, high_open=True)  # m_f of the ramp
    momentum_ramp_updates: float = positive(100_000.0)  # T of the ramp
    batch_size: int = positive()
    max_updates: int = positive()  # the budget, counted in weight updates as in the paper


@dataclass
class TrainerConfig:
    name: str = "default"
    accelerator: str = one_of("auto", "auto", "cpu", "gpu", "cuda", "mps")
    eval_every: int = positive(500)  # updates between evaluations (metrics.csv row + last.ckpt)
    eval_batch_size: int = positive(10_000)
    deterministic: bool = True
    # bf16-mixed: bfloat16 matrix products under autocast; fp16 would need loss scaling, which the
    # per-run divergence tracking of a pack cannot share, so it is not offered
    precision: str = one_of("32-true", "32-true", "bf16-mixed")
    # float32 matrix products: `highest` = full FP32; `high` lets CUDA use TF32 tensor cores
    matmul_precision: str = one_of("highest", "highest", "high")
    cuda_graph: CudaGraph = CudaGraph.auto
    threads: Optional[int] = optional_positive()  # CPU threads for torch (None: torch's default)


@dataclass
class LoggerConfig:
    """A Lightning logger built once per run with save_dir=<run dir> (`_target_` null: no logger)."""

    name: str = "none"
    _target_: Optional[str] = None  # e.g. pytorch_lightning.loggers.TensorBoardLogger
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    regularizer: RegularizerConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = _spec(0, lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")


def register_schema() -> None:
    """Make `train_schema` available to the defaults list of conf/train.yaml."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


# ----------------------------------------------------------------------------- validation
def validate(cfg: DictConfig | TrainConfig | dict) -> TrainConfig:
    """Check every declared range; return the config as dataclasses. Raises ConfigError."""
    if isinstance(cfg, TrainConfig):
        obj = cfg
    elif isinstance(cfg, dict):
        obj = _typed(OmegaConf.create(cfg), TrainConfig)
    elif _typed_by_composition(cfg):  # the Composer's output: group by group, no merge (fast)
        obj = TrainConfig(**{k: OmegaConf.to_object(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in cfg})
    else:
        obj = _typed(cfg, TrainConfig)
    check_ranges(obj, prefix="")
    if obj.regularizer.l1.start_fraction > 0 and obj.regularizer.l1.weight == 0:
        raise ConfigError(
            f"regularizer.l1.start_fraction={obj.regularizer.l1.start_fraction}: needs "
            "regularizer.l1.weight > 0 (a late L1 start without L1 does nothing)")
    return obj


_RUN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


def _typed_by_composition(cfg: DictConfig) -> bool:
    """Exactly the run's keys, each group already typed by its schema (composed with train_schema)."""
    return set(cfg) == _RUN_KEYS and all(
        OmegaConf.get_type(cfg, k) is schema for k, schema in GROUP_SCHEMAS.items())


def _typed(cfg: DictConfig, schema: type) -> Any:
    """The composed config (without Hydra's node) as instances of the schema's dataclasses."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), without_hydra(cfg)))


def check_ranges(node: Any, prefix: str = "") -> None:
    """ConfigError for the first field (depth first) outside the range its metadata declares."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, prefix=f"{key}.")
        elif "check" in f.metadata:
            try:
                ok = f.metadata["check"](value)
            except TypeError:
                ok = False
            if not ok:
                raise ConfigError(f"{key}={value!r}: allowed is {f.metadata['allowed']}")


def as_container(settings: TrainConfig) -> dict[str, Any]:
    """The run's resolved config as plain dicts, lists and scalars (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(settings), enum_to_str=True)


GROUP_SCHEMAS = {"dataset": DatasetConfig, "model": ModelConfig, "regularizer": RegularizerConfig,
                 "optim": OptimConfig, "trainer": TrainerConfig, "logger": LoggerConfig}


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The run's own config: everything but Hydra's `hydra` node, with interpolations resolved."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    container = OmegaConf.to_container(plain, resolve=True, enum_to_str=True)
    return OmegaConf.create(container)
