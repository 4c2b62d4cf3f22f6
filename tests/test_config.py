"""Every config file composes and instantiates; bad values fail early, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dropreg.compose import compose, conf_dir
from dropreg.errors import ConfigError, one_line
from dropreg.schema import validate

# every Hydra config group of conf/train.yaml
GROUP_FILES = sorted((g.name, f.stem) for g in conf_dir().iterdir() if g.is_dir() for f in g.glob("*.yaml"))


def test_every_group_has_files():
    groups = {g for g, _ in GROUP_FILES}
    assert groups == {"dataset", "model", "regularizer", "optim", "trainer", "logger"}


@pytest.mark.parametrize("group, option", GROUP_FILES, ids=[f"{g}/{o}" for g, o in GROUP_FILES])
def test_option_composes_and_instantiates(group, option, data_dir):
    from dropreg.schema import as_container
    from dropreg.data.datamodule import PreparedDataModule
    from dropreg.module import PackedClassifier

    cfg = compose([f"{group}={option}", f"dataset.data_dir={data_dir}"])
    settings = validate(cfg)
    assert getattr(settings, group).name == option
    module = PackedClassifier([as_container(settings)])
    assert module.net.layers[-1].out_features == settings.dataset.num_classes
    assert [layer.out_features for layer in module.net.hidden_layers] == settings.model.hidden
    PreparedDataModule(settings.dataset, 1000)
    optimizer = module.configure_optimizers()
    assert optimizer.param_groups[0]["lr"].shape == (1,)
    assert float(module.model.schedules.lr0[0]) == pytest.approx(settings.optim.lr)


def test_regularizer_files_set_what_their_name_says():
    def reg(name):
        return validate(compose([f"regularizer={name}"])).regularizer

    assert reg("none").l2.weight == 0 and reg("none").max_norm.radius is None
    assert reg("dropout").dropout.input_retain == 0.8 and reg("dropout").dropout.hidden_retain == 0.5
    assert reg("dropout_max_norm").max_norm.radius == 2.0 and reg("dropout_max_norm").dropout.hidden_retain == 0.5
    assert reg("l2_l1_late").l1.start_fraction > 0 and reg("l2_l1_late").l2.weight > 0
    assert reg("l2_kl_sparsity").kl_sparsity.weight > 0 and reg("l2_kl_sparsity").l2.weight > 0


def test_paper_protocol_values():
    s = validate(compose(["model=paper_mlp", "optim=paper"]))
    assert s.model.hidden == [1024, 1024, 2048]
    assert (s.optim.batch_size, s.optim.max_updates, s.optim.final_momentum) == (100, 1_000_000, 0.95)
    u = validate(compose(["optim=udacity"])).optim
    assert (u.lr, u.batch_size, u.max_updates, u.momentum) == (0.5, 128, 3001, 0.0)


BAD = [
    (["regularizer.dropout.hidden_retain=0"], "regularizer.dropout.hidden_retain"),
    (["regularizer.dropout.input_retain=1.5"], "regularizer.dropout.input_retain"),
    (["regularizer.l2.weight=-0.1"], "regularizer.l2.weight"),
    (["regularizer.l1.weight=-1"], "regularizer.l1.weight"),
    (["regularizer.max_norm.radius=0"], "regularizer.max_norm.radius"),
    (["regularizer.kl_sparsity.target=1.0"], "regularizer.kl_sparsity.target"),
    (["model.hidden=[1024,0]"], "model.hidden"),
    (["model.hidden=[]"], "model.hidden"),
    (["optim.batch_size=0"], "optim.batch_size"),
    (["optim.max_updates=-5"], "optim.max_updates"),
    (["optim.lr=0"], "optim.lr"),
    (["optim.momentum=1.0"], "optim.momentum"),
    (["model.activation=tanh"], "model.activation"),
    (["model.init=xavier"], "model.init"),
    (["optim.lr_schedule=cosine"], "optim.lr_schedule"),
    (["regularizer.l2.form=squared"], "regularizer.l2.form"),
    (["model.dropout=0.5"], "model.dropout"),  # unknown key
    (["+regularizer.l3.weight=1"], "regularizer.l3"),  # unknown key, even when forced with +
    (["trainer.eval_every=0"], "trainer.eval_every"),
    (["trainer.accelerator=tpu"], "trainer.accelerator"),
    (["optim.lr=fast"], "optim.lr"),
    (["seed=-1"], "seed"),
    (["seed=4294967296"], "seed"),
    (["trainer.precision=16-mixed"], "trainer.precision"),
    (["trainer.cuda_graph=maybe"], "trainer.cuda_graph"),
    (["optim.max_updates=abc"], "optim.max_updates"),
    (["regularizer=bogus"], "regularizer/bogus"),
    (["regularizer.l1.start_fraction=0.5"], "regularizer.l1.start_fraction"),
]


@pytest.mark.parametrize("overrides, key", BAD, ids=[o[0] for o, _ in BAD])
def test_bad_config_is_rejected_naming_the_key(overrides, key):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with pytest.raises((ConfigError, HydraException, OmegaConfBaseException)) as info:
        validate(compose(overrides))
    message = one_line(info.value)
    assert key in message, message
    assert "\n" not in message


def test_range_message_names_value_and_allowed_range():
    with pytest.raises(ConfigError, match=r"regularizer\.dropout\.hidden_retain=0\.0: allowed is a number in \(0, 1\]"):
        validate(compose(["regularizer.dropout.hidden_retain=0"]))


def test_cli_rejects_before_training_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "dropreg.train", "regularizer.l2.weight=-1", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["dropreg.train: error: regularizer.l2.weight=-1.0: allowed is a number >= 0"], proc.stderr
    assert not Path(run_dir).exists()


def test_the_fast_composer_gives_what_hydras_compose_gives():
    """Every config the tests and the pipeline build goes through Composer (Hydra's compose once per
    choice of groups, then Hydra's override parser and OmegaConf.update): on a grid of group choices
    and value overrides it equals a full Hydra compose of the same overrides."""
    import itertools

    from dropreg.compose import Composer
    from dropreg.schema import as_container

    composer = Composer()
    groups = [["regularizer=none", "regularizer=dropout_max_norm", "regularizer=l2_l1_late"],
              ["optim=paper", "optim=demo", "optim=quick"], ["model=paper_mlp", "model=demo_mlp"]]
    values = [[], ["optim.lr=0.3", "regularizer.dropout.hidden_retain=0.7"], ["model.hidden=[64,32]", "seed=5"],
              ["regularizer.max_norm.radius=3.0", "trainer.eval_every=77", "dataset=mnist"]]
    for choice in itertools.product(*groups, values):
        overrides = [*choice[:-1], *choice[-1]]
        fast = as_container(validate(composer(overrides)))  # group by group
        full = as_container(validate(compose(overrides)))  # merged onto the schema
        assert fast == full, overrides
