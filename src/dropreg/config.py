"""Typed Hydra configuration: one dataclass per config group, with each field's allowed range beside it.

Hydra/OmegaConf check key names and types while composing (an unknown key or a wrong enum value
fails there); `validate` then checks every value against the range declared in its field's metadata,
so a bad value fails before any training with one line naming the key, the value and what is allowed.

Two views of a run's config matter beyond validation:
- its *identity* (`run_identity`): what decides its results. Operational keys (threads, logger, where
  the prepared data lives) are left out, and a key missing from an older stored config counts as its
  schema default, so adding a key with a neutral default does not invalidate finished runs;
- its *pack key* (`pack_key`): what runs must share to train together as one batched network
  (dataset, architecture, batch size, budget, trainer). Seeds, initialization, regularizer settings,
  learning-rate and momentum schedules and the training subset may differ within a pack.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration value outside its allowed range (message: key, value, what is allowed)."""


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
    else:
        obj = _typed(cfg, TrainConfig)
    _check_node(obj, prefix="")
    if obj.regularizer.l1.start_fraction > 0 and obj.regularizer.l1.weight == 0:
        raise ConfigError(
            f"regularizer.l1.start_fraction={obj.regularizer.l1.start_fraction}: needs "
            "regularizer.l1.weight > 0 (a late L1 start without L1 does nothing)")
    return obj


def _typed(cfg: DictConfig, schema: type) -> Any:
    """The composed config (without Hydra's node) as instances of the schema's dataclasses."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), without_hydra(cfg)))


def _check_node(node: Any, prefix: str) -> None:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_node(value, prefix=f"{key}.")
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


# ----------------------------------------------------------------------------- identity and packs
# keys that change how a run executes, not what it computes
OPERATIONAL_KEYS = ("trainer.threads", "dataset.data_dir", "logger")
# keys in which the members of one pack may differ; every other key must be equal across a pack
MEMBER_KEYS = ("seed", "model.name", "model.init", "model.init_std", "regularizer", "optim.name", "optim.lr",
               "optim.lr_schedule", "optim.lr_decay_updates", "optim.momentum", "optim.momentum_schedule",
               "optim.final_momentum", "optim.momentum_ramp_updates", "dataset.train_subset")


def _without(config: dict, dotted_keys: tuple[str, ...]) -> dict:
    out = copy.deepcopy(config)
    for dotted in dotted_keys:
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return out


GROUP_SCHEMAS = {"dataset": DatasetConfig, "model": ModelConfig, "regularizer": RegularizerConfig,
                 "optim": OptimConfig, "trainer": TrainerConfig, "logger": LoggerConfig}


def with_defaults(config: dict) -> dict:
    """A stored config completed with the schema's defaults for keys it lacks (older versions)."""
    def fill(node: Any, defaults: Any) -> Any:
        if not (isinstance(node, dict) and isinstance(defaults, dict)):
            return node
        missing = {k: v for k, v in defaults.items() if k not in node and v != "???"}
        return {**missing, **{k: fill(v, defaults.get(k)) for k, v in node.items()}}

    defaults = {"seed": 0, **{g: OmegaConf.to_container(OmegaConf.structured(cls), enum_to_str=True)
                              for g, cls in GROUP_SCHEMAS.items()}}
    return fill(config, defaults)


def run_identity(config: dict) -> dict:
    """What decides a run's results: its config without operational keys, defaults filled in."""
    return _without(with_defaults(config), OPERATIONAL_KEYS)


def pack_key(config: dict) -> dict:
    """What the runs of one pack must share (see the module docstring)."""
    return _without(config, MEMBER_KEYS)


def first_difference(a: Any, b: Any, prefix: str = "", there: str = "there", now: str = "now") -> Optional[str]:
    """`key: A there, B now` for the first difference between two nested dicts (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.", there, now)
            if found:
                return found
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} {there}, {b!r} {now}"


class PackError(ConfigError):
    """Runs that cannot train together as one pack (message: the two runs and the key they differ in)."""


def check_packable(configs: list[dict], names: list[str]) -> None:
    """Every run must share the first one's pack key."""
    ref = pack_key(configs[0])
    for config, name in zip(configs[1:], names[1:]):
        diff = first_difference(ref, pack_key(config), there=f"in {names[0]}", now=f"in {name}")
        if diff:
            raise PackError(f"runs that differ in more than seed, init, regularizer, lr and momentum schedule "
                            f"and training subset cannot share a pack: {diff}")


# ----------------------------------------------------------------------------- composition
def conf_dir() -> Path:
    """The Hydra config directory: $DROPREG_CONF, else conf/ at the repository root."""
    env = os.environ.get("DROPREG_CONF")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "conf"


CONFIG_GROUPS = tuple(GROUP_SCHEMAS)


def compose(overrides: list[str], config_name: str = "train") -> DictConfig:
    """Compose conf/<config_name>.yaml with Hydra overrides; includes the `hydra` node (run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=True)


class Composer:
    """Composes many runs quickly, with Hydra's semantics.

    Hydra's compose takes ~0.2 s per call here, too slow for the hundreds of runs a preset expands
    to. Each distinct choice of config-group options (`regularizer=l2 optim=paper ...`) is composed
    by Hydra once; the `key=value` overrides are then parsed by Hydra's own override parser and
    applied exactly as Hydra applies them (`OmegaConf.update(cfg, key, value, merge=True)`). Any
    other kind of override (`+key`, `~key`, sweeps) goes through a full Hydra compose.
    """

    def __init__(self) -> None:
        self._bases: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, overrides: list[str]) -> DictConfig:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType

        parsed = OverridesParser.create().parse_overrides(list(overrides))
        groups, values = [], []
        for o in parsed:
            key = o.key_or_group
            if o.type is not OverrideType.CHANGE or o.is_sweep_override() or o.package is not None \
                    or key.startswith("hydra"):
                return without_hydra_typed(compose(overrides))
            (groups if key in CONFIG_GROUPS else values).append(o)
        selection = tuple(o.input_line for o in groups)
        if selection not in self._bases:
            self._bases[selection] = without_hydra_typed(compose(list(selection)))
        cfg = copy.deepcopy(self._bases[selection])
        for o in values:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        return cfg


def without_hydra_typed(cfg: DictConfig) -> DictConfig:
    """The composed config without Hydra's node, still typed by the schema (for fast validation)."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def settings_of(cfg: DictConfig) -> TrainConfig:
    """A typed composed config (Composer output) as validated dataclasses."""
    obj = TrainConfig(**{k: OmegaConf.to_object(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
                         for k in cfg})
    return validate(obj)


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The run's own config: everything but Hydra's `hydra` node, with interpolations resolved."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    container = OmegaConf.to_container(plain, resolve=True, enum_to_str=True)
    return OmegaConf.create(container)


def exception_chain(exc: BaseException) -> list[Any]:
    """The exception, its causes/contexts, and the arguments of each (libraries wrap the error that
    names the culprit: Hydra an OmegaConf error, Snakemake a jsonschema error)."""
    chain: list[Any] = []
    seen: BaseException | None = exc
    while seen is not None:
        chain += [seen, *seen.args]
        seen = seen.__cause__ or seen.__context__
    return chain


def one_line(exc: BaseException) -> str:
    """A one-line description of a composition/validation error that names the offending key."""
    from omegaconf.errors import OmegaConfBaseException

    for e in exception_chain(exc):
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            msg = str(getattr(e, "msg", "") or e).splitlines()[0]
            return f"{e.full_key}: {msg}"
    # Hydra appends its search path to a missing group option; the first part names the culprit.
    return " ".join(str(exc).split()).split(" Config search path:")[0]


# ----------------------------------------------------------------------------- the data CLI (conf/data.yaml)
@dataclass
class DownloadConfig:
    local_dir: Optional[str] = None  # pre-downloaded files: <local_dir>/<dataset>/<file> or <local_dir>/<file>
    mirror: Optional[str] = None  # site mirror tried first: <mirror>/<dataset>/<file>
    retries: int = non_negative(3)
    backoff_s: float = non_negative(1.0)
    timeout_s: float = positive(60.0)
    progress: bool = True


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
    download: DownloadConfig = field(default_factory=DownloadConfig)
    mnist: IdxSplitConfig = field(default_factory=IdxSplitConfig)
    fashion_mnist: IdxSplitConfig = field(default_factory=IdxSplitConfig)
    notmnist: NotMNISTConfig = field(default_factory=NotMNISTConfig)


def load_data_config(overrides: list[str]) -> DataConfig:
    """Compose conf/data.yaml with overrides; validate ranges. Raises ConfigError / Hydra errors."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="data_schema", node=DataConfig)
    obj = _typed(compose(overrides, config_name="data"), DataConfig)
    _check_node(obj, prefix="")
    return obj
