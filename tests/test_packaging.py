"""README, environment.yml, pyproject.toml and CI agree with each other."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_readme_starts_with_demo_then_test():
    assert _readme_commands()[:2] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_environment_yml_pins_match_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(deps)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and python == "python=3.11"


def test_torch_is_pinned_to_the_version_the_tests_run_on():
    """An exact pin (an open one pulls a CUDA build of several GB), and the one this venv has."""
    import torch

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0] == "torch"]
    assert pin == f"torch=={torch.__version__.split('+')[0]}"


def test_test_tools_are_an_extra_that_make_test_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith(("pytest", "snakefmt")) for d in project["dependencies"])
    assert {d.split(">")[0] for d in project["optional-dependencies"]["test"]} == {"pytest", "snakefmt"}
    assert "'.[test]'" in (ROOT / "Makefile").read_text()


def test_snakefile_is_snakefmt_clean():
    import subprocess
    import sys

    files = [str(ROOT / "Snakefile"), *map(str, sorted((ROOT / "rules").glob("*.smk")))]
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
