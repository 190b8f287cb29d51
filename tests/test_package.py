"""The wheel works outside a checkout: built, installed into a fresh virtual environment, and
its console scripts find the shipped lists, levels and cards as package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.mark.slow
@pytest.mark.wordnet
def test_installed_wheel_builds_levels_and_lists_models(tmp_path, reader):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the venv's cog
    env["COG_HOME"] = str(tmp_path / "home")
    # a clean copy: an in-tree build/ folder could carry modules deleted since into the wheel
    src = tmp_path / "src"
    junk = ("build", "*.egg-info", ".git", "__pycache__", "results", "benchmarks", "notebooks")
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*junk, ".*cache", "corpora"))
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    _run([*pip_wheel, "-w", str(dist), str(src)], tmp_path, env)
    (wheel,) = dist.glob("cog-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    py, bindir = venv / "bin" / "python", venv / "bin"
    _run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
        env,
    )
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    where = _run([str(py), "-c", "import cog; print(cog.__file__)"], tmp_path, env).strip()
    assert Path(where).is_relative_to(venv), f"cog imported from {where}, not the wheel"

    out = tmp_path / "levels"
    _run([str(bindir / "cog-build-levels"), "--out", str(out)], tmp_path, env)
    assert (out / "levels.csv").is_file() and (out / "provenance.json").is_file()
    listed = _run([str(bindir / "cog-models"), "list"], tmp_path, env)
    assert "sup_resnet50" in listed and "deit_small" in listed
    # the shipped lists and levels are inside the installed package, not beside it
    installed = Path(where).parent / "resources"
    for name in ("imagenet1k_wnids.txt", "imagenet21k_fall11_wnids.txt", "levels/levels.csv"):
        assert (installed / name).is_file(), name
