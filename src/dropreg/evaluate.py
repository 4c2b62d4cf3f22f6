"""`python -m dropreg.evaluate RUN_DIR|CHECKPOINT [dataset=NAME] [key=value ...]`: the errors of a
trained model, on its own dataset or another one.

Loads the run's `last.ckpt` (the final model once the run ended), applies the overrides to the
run's stored config (a dataset option such as `dataset=fashion_mnist`, or keys such as
`dataset.data_dir=...`, `trainer.accelerator=cpu`), and computes the test error as training does
and, where the dataset has a validation split, the validation error (flagged when the run trained on
those images: the paper's final runs merge them in). Overrides may not change the net's shape.
Prints one line and writes `<run dir>/evaluation/<dataset>.json`. The same model is also a LightningModule:
`PackedClassifier.load_from_checkpoint("<run dir>/last.ckpt")` is a pack of one holding it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A stored run config with Hydra-style overrides: `group=option` replaces that group's node by
    the option's file; `key=value` sets one key (parsed as Hydra parses it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .compose import CONFIG_GROUPS, Composer

    cfg = OmegaConf.create(config)
    compose = Composer()
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.key_or_group in CONFIG_GROUPS:
            cfg[o.key_or_group] = compose([o.input_line])[o.key_or_group]
        else:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def evaluate(checkpoint: Path, overrides: list[str]) -> dict[str, Any]:
    import torch

    from .identity import first_difference
    from .schema import as_container, validate
    from .data.datamodule import PreparedDataModule
    from .module import PackedClassifier
    from .runfiles import Checkpoint, RunFileError

    ckpt = Checkpoint.load(checkpoint)
    stored = ckpt.config
    settings = validate(apply_overrides(stored, overrides))
    config = as_container(settings)
    shape = {k: {"model": c["model"], "io": (c["dataset"]["input_dim"], c["dataset"]["num_classes"])}
             for k, c in (("stored", as_container(validate(stored))), ("now", config))}
    change = first_difference(shape["stored"], shape["now"])
    if change:
        raise RunFileError(f"{checkpoint}: the overrides change the trained net ({change}); evaluate it as it was "
                           "trained, on data of the same shape")
    module = PackedClassifier([config], settings=[settings])
    module.load_state_dict(ckpt.state_dict)
    accelerator = settings.trainer.accelerator
    device = torch.device("cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
                          else "cpu")
    module.to(device).eval()
    data = PreparedDataModule(settings.dataset, settings.trainer.eval_batch_size)
    manifest = data.check([settings])
    data.setup(device=device)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "run_id": ckpt.run_id,
                              "update": ckpt.update, "dataset": settings.dataset.name,
                              "dataset_md5": manifest["npz_md5"]}
    splits = ["test"] + (["val"] if data.has_val else [])
    with torch.inference_mode():
        for split in splits:
            correct = total = 0
            x_all, y_all = data.tensors[split]
            for i in range(0, len(y_all), settings.trainer.eval_batch_size):
                x, y = x_all[i:i + settings.trainer.eval_batch_size], y_all[i:i + settings.trainer.eval_batch_size]
                correct += int((module.net.member_logits(0, x).argmax(1) == y).sum())
                total += len(y)
            result[f"{split}_error"] = round(100.0 * (1.0 - correct / total), 4)
    # a run trained on train + validation (use_validation=false) has seen the validation images
    result["val_in_training"] = data.has_val and not stored["dataset"]["use_validation"] \
        and stored["dataset"]["name"] == settings.dataset.name
    return result


def main(argv: list[str] | None = None) -> int:
    from .atomic import write_json
    from .errors import one_line
    from .runfiles import CHECKPOINT_FILE, RunFileError
    from .train import _one_line_errors

    parser = argparse.ArgumentParser(prog="python -m dropreg.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a run dir, or a checkpoint file")
    parser.add_argument("overrides", nargs="*", help="dataset=NAME, dataset.data_dir=DIR, trainer.accelerator=cpu, ...")
    args = parser.parse_args(argv)
    target = Path(args.target)
    checkpoint = target / CHECKPOINT_FILE if target.is_dir() else target
    try:
        if not checkpoint.is_file():
            raise RunFileError(f"{checkpoint}: no such checkpoint (a run dir holds last.ckpt once it evaluated)")
        result = evaluate(checkpoint, args.overrides)
    except (RunFileError, *_one_line_errors()) as exc:
        print(f"dropreg.evaluate: error: {one_line(exc)}", file=sys.stderr)
        return 2
    out = checkpoint.parent / "evaluation" / f"{result['dataset']}.json"
    write_json(out, result)
    val = ""
    if "val_error" in result:
        val = f", validation error {result['val_error']:.2f}%" + (" (seen in training)" if result["val_in_training"] else "")
    print(f"dropreg.evaluate: {checkpoint} on {result['dataset']}: test error {result['test_error']:.2f}%{val} "
          f"(update {result['update']}); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
