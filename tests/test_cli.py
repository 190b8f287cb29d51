"""The command-line contract shared by every cog command: one option vocabulary, no
abbreviations, quick --help, output locations checked before any work, one-line errors."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIS = (
    "build_levels",
    "build_splits",
    "demo",
    "eval",
    "extract",
    "models",
    "report",
    "tldr",
    "train_mochi",
)
HEAVY = ("torch", "timm", "pandas", "numpy", "matplotlib", "sklearn", "h5py", "PIL", "nltk")


def _parser(name: str):
    mod = importlib.import_module(f"cog.cli.{name}")
    return (getattr(mod, "parser", None) or mod.build_parser)()


def _subparsers(p):
    import argparse

    out = [p]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            out += list(a.choices.values())
    return out


def _options(p) -> set[str]:
    import argparse

    return {s for a in p._actions if a.help is not argparse.SUPPRESS for s in a.option_strings}


@pytest.mark.parametrize("name", CLIS)
def test_help_imports_nothing_heavy_and_answers_quickly(name):
    """--help must not wait for torch & co: checked by the modules a fresh interpreter holds
    after building the parser (exact), and by the wall time of `--help` (generous bound)."""
    code = (
        "import sys, importlib\n"
        f"m = importlib.import_module('cog.cli.{name}')\n"
        "p = (getattr(m, 'parser', None) or m.build_parser)()\n"
        "p.format_help()\n"
        f"print(sorted(h for h in {HEAVY!r} if h in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]", f"cog.cli.{name} imports {out.stdout.strip()} for --help"
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", f"cog.cli.{name}", "--help"], capture_output=True, env=env
    )
    seconds = time.perf_counter() - t0
    assert res.returncode == 0
    assert seconds < 5.0, f"cog.cli.{name} --help took {seconds:.1f} s"


@pytest.mark.parametrize("name", CLIS)
def test_every_help_has_an_example_and_honest_defaults(name):
    for p in _subparsers(_parser(name)):
        text = p.format_help()
        assert "example" in (p.epilog or ""), f"{p.prog}: no example in the epilog"
        assert "(default: None)" not in text and "(default: False)" not in text, p.prog
        for line in text.splitlines():  # a default is stated once
            assert line.lower().count("default") <= 1, f"{p.prog}: {line}"
        assert not p.allow_abbrev, f"{p.prog} accepts abbreviated options"


def test_the_vocabulary_is_the_same_everywhere():
    expect = {
        "eval": {"--datasets", "--quiet", "--overwrite", "--in1k-root", "--imagenet-root", "--out"},
        "extract": {
            "--datasets",
            "--quiet",
            "--overwrite",
            "--in1k-root",
            "--imagenet-root",
            "--out",
        },
        "build_levels": {"--quiet", "--imagenet-root", "--out"},
        "build_splits": {"--quiet", "--imagenet-root", "--out"},
        "report": {"--out"},
        "train_mochi": {"--in1k-root", "--quiet", "--overwrite", "--out"},
        "demo": {"--quiet", "--out"},
    }
    for name, opts in expect.items():
        have = _options(_parser(name))
        assert opts <= have, f"cog.cli.{name} lacks {opts - have}"
    for sub in _subparsers(_parser("tldr"))[1:]:
        assert {"--quiet", "--overwrite", "--in1k-root", "--imagenet-root", "--out"} <= _options(
            sub
        )
    banned = {"--no-progress", "--force", "--overwrite-card", "--dataset", "--data"}
    for name in CLIS:
        for p in _subparsers(_parser(name)):
            assert not banned & _options(p), f"{p.prog} still advertises {banned & _options(p)}"


def test_datasets_take_commas_or_spaces_and_old_spelling_warns(capsys):
    p = _parser("extract")
    for argv in (["in1k,cog_l1"], ["in1k", "cog_l1"], ["in1k,", "cog_l1"]):
        assert p.parse_args(["m", "--datasets", *argv]).datasets == ("in1k", "cog_l1")
    a = p.parse_args(["m", "--dataset", "in1k", "--no-progress"])
    assert a.datasets == ("in1k",) and a.quiet
    err = capsys.readouterr().err
    assert "--dataset is deprecated; use --datasets" in err
    assert "--no-progress is deprecated; use --quiet" in err
    with pytest.raises(SystemExit) as e:
        p.parse_args(["m", "--datasets", "in1k,imagenet"])
    assert e.value.code == 2
    assert "unknown imagenet" in capsys.readouterr().err


def test_abbreviations_are_refused_with_a_suggestion(capsys):
    for name, argv, hint in (
        ("eval", ["m", "--dataset", "in1k"], None),  # a deprecated alias, not an abbreviation
        ("eval", ["m", "--dat", "in1k"], "--datasets"),
        ("extract", ["m", "--quite"], "--quiet"),
        ("tldr", ["fit", "m", "--dim", "8", "--overwrit"], "--overwrite"),
    ):
        if hint is None:
            _parser(name).parse_args(argv)
            capsys.readouterr()
            continue
        with pytest.raises(SystemExit) as e:
            _parser(name).parse_args(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"did you mean {hint}?" in err


def test_cli_mirrors_agree_with_the_library():
    """The CLIs restate a few library constants to keep --help light; they must not drift."""
    import cog.bench.study as tldr_study
    import cog.compress.files as tldr_files
    import cog.compress.nets as tldr_nets
    import cog.ssl.config as train_config
    from cog.bench import config, leaderboard
    from cog.cli import build_levels as bl
    from cog.cli import build_splits as bs
    from cog.cli import dataclass_defaults
    from cog.cli import eval as ev
    from cog.cli import extract as ex
    from cog.cli import tldr as tl
    from cog.concepts import levels, splits
    from cog.features import images as data

    assert (ev.DATASETS, ev.DEFAULT_SEEDS, ev.DEFAULT_SHOTS) == (
        data.DATASETS,
        config.DEFAULT_SEEDS,
        config.DEFAULT_SHOTS,
    )
    from cog import cli

    assert (ev.PROTOCOLS, cli.RANDOM_INIT_SUFFIX) == (
        leaderboard.PROTOCOLS,
        leaderboard.RANDOM_INIT_SUFFIX,
    )
    from cog.bench import submit

    assert ev.CLUSTERS == submit.CLUSTERS
    assert (ex.DATASETS, ex.SPLITS) == (data.DATASETS, data.SPLITS)
    assert (bl.DEFAULT_SEEN, bl.DEFAULT_POOL) == (levels.DEFAULT_SEEN, levels.DEFAULT_POOL)
    assert (bl.FILTERS, bl.IC_SOURCES, bl.CUT_RULES) == (
        levels.FILTERS,
        levels.IC_SOURCES,
        levels.CUT_RULES,
    )
    assert (bs.N_TEST, bs.MAX_TRAIN, bs.MIN_TRAIN) == (
        splits.N_TEST,
        splits.MAX_TRAIN,
        splits.MIN_TRAIN,
    )
    assert (tl.DEFAULT_STUDY_DIMS, tl.ENCODERS, tl.METHODS, tl.OPTIMIZERS, tl.STUDY_METRICS) == (
        tldr_study.DEFAULT_STUDY_DIMS,
        tldr_nets.ENCODERS,
        tldr_files.METHODS,
        tldr_nets.OPTIMIZERS,
        tldr_study.STUDY_METRICS,
    )
    real = train_config.TrainConfig(data="", name="")
    read = dataclass_defaults("cog.ssl.config", "TrainConfig")
    assert read and all(getattr(real, k) == v for k, v in read.items())


# ----------------------------------------------------------------------------- outputs


@contextlib.contextmanager
def read_only_dir(path: Path):
    """A folder nobody may write into. chmod is enough for a normal user; root ignores
    permissions, so for root the folder is made immutable (chattr +i, ext4/xfs), and the
    test is skipped where neither works (e.g. tmpfs)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            res = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
            immutable = res.returncode == 0
        probe = path / "probe"
        try:
            probe.write_text("")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"cannot make {path} read-only here (root without chattr +i)")
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o755)


def _cases(out: str, data: Path) -> list[tuple[str, list[str]]]:
    """Each command with `out` where it writes; other arguments valid enough to get there."""
    return [
        ("build_levels", ["--out", out]),
        ("build_splits", ["--imagenet-root", str(data), "--out", out]),
        ("eval", ["sup_resnet50", "--out", out]),
        ("eval", ["sup_resnet50", "--cache-dir", out]),
        ("extract", ["sup_resnet50", "--images", str(data), "--out", f"{out}/f.h5"]),
        ("extract", ["sup_resnet50", "--datasets", "in1k", "--cache-dir", out]),
        ("report", ["--out", out]),
        ("report", ["--page", f"{out}/README.md"]),
        ("tldr", ["fit", "sup_resnet50", "--dim", "8", "--out", f"{out}/p.pt"]),
        ("tldr", ["study", "sup_resnet50", "--out", out]),
        ("train_mochi", ["--in1k-root", str(data), "--name", "x", "--out", out]),
        ("demo", ["--out", out]),
    ]


def _run_all(cases, monkeypatch, capsys, tmp_path, must_name: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    for name, argv in cases:
        mod = importlib.import_module(f"cog.cli.{name}")
        t0 = time.perf_counter()
        code = mod.main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, f"cog.cli.{name} {argv}: exit {code}, {err}"
        assert len(err.splitlines()) == 1, f"cog.cli.{name} {argv}: {err}"
        assert err.startswith("error: ") and must_name in err, err
        assert time.perf_counter() - t0 < 30, f"cog.cli.{name} worked before checking {argv}"


def test_every_command_refuses_a_file_in_place_of_a_folder(tmp_path, monkeypatch, capsys):
    """`--out FILE` where a folder is expected, and a file where a parent folder should be."""
    data = tmp_path / "data"
    data.mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    _run_all(_cases(str(blocker / "sub"), data), monkeypatch, capsys, tmp_path, str(blocker))
    folder_cases = [(n, a) for n, a in _cases(str(blocker), data) if str(blocker) in a]
    _run_all(folder_cases, monkeypatch, capsys, tmp_path, str(blocker))


def test_every_command_refuses_a_read_only_output(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    with read_only_dir(tmp_path / "ro") as ro:
        _run_all(_cases(str(ro), data), monkeypatch, capsys, tmp_path, str(ro))
        _run_all(_cases(str(ro / "new"), data), monkeypatch, capsys, tmp_path, str(ro))


def test_models_check_on_a_missing_gpu_is_one_line(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from cog.cli.models import main

    assert main(["check", "sup_resnet50", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cpu" in err


def test_models_list_has_a_cached_column_and_a_group_legend(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path))
    from cog.cli.models import GROUP_LEGEND, main

    assert main(["list", "--group", "sup"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "cached" in header
    for group in GROUP_LEGEND:
        assert any(line.split()[:1] == [group] for line in out.splitlines()), group


# ----------------------------------------------------------------------------- demo


def _tree_state(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def test_demo_runs_end_to_end_and_touches_nothing_shipped(tmp_path, monkeypatch, capsys):
    """The newcomer's first command: generated data to results page, nothing downloaded,
    nothing written outside --out (the shipped splits/ folder above all)."""
    pytest.importorskip("nltk")
    from cog.cli.demo import main
    from cog.io import SHIPPED_DIR

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COG_OFFLINE", "1")
    shipped = _tree_state(SHIPPED_DIR)
    assert main(["--quiet"]) == 0
    out = capsys.readouterr().out
    demo = tmp_path / "results" / "demo"
    page = demo / "README.md"
    assert page.is_file() and (demo / "leaderboard.csv").is_file()
    assert (demo / "figures" / "levels_top1_fast.png").is_file()
    text = page.read_text()
    assert "Ranking" in text
    import pandas as pd

    lb = pd.read_csv(demo / "leaderboard.csv")
    assert set(lb["dataset"]) == {"in1k", "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5"}
    assert ("RANDOM-INIT" in out) == lb["model"].str.endswith("+random-init").all()
    assert "cog-build-levels --imagenet-root" in out and "cog-report" in out
    assert {p.name for p in tmp_path.iterdir()} - {"home"} == {"results"}
    assert _tree_state(SHIPPED_DIR) == shipped


def test_models_list_reads_cards_without_torch(tmp_path):
    """`cog-models list` answers from the cards: no torch, torchvision or timm import."""
    code = (
        "import sys, io, contextlib\n"
        "from cog.cli.models import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['list']) == 0\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'pandas') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "COG_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cog.cli.models", "list"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("env", [{}, {"TORCH_HOME": "/x/th"}, {"XDG_CACHE_HOME": "/x/xdg"}])
def test_checkpoint_dir_without_torch_is_torchs(env, monkeypatch):
    torch_hub = pytest.importorskip("torch.hub")
    from cog import zoo

    for k in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delitem(sys.modules, "torch.hub")  # the torch-free path (restored after)
    mine = zoo.checkpoint_dir()
    assert mine == Path(torch_hub.get_dir()) / "checkpoints"


def test_the_default_feature_cache_is_checked_too(tmp_path, monkeypatch, capsys):
    """Without --cache-dir the cache is $COG_HOME/features: checked like any output."""
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    monkeypatch.setenv("COG_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    from cog.cli.eval import main

    assert main(["sup_resnet50", "--datasets", "in1k"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "$COG_HOME/features" in err and str(home) in err


def test_exclude_small_that_empties_a_level_is_a_short_error(tmp_path, capsys):
    """--exclude-small used to write an empty split file and exit 0; now: one line, the first
    excluded concepts only, and the options that would help."""
    from cog.cli.build_splits import main
    from cog.features import synthetic

    wnids = [f"n0{i:07d}" for i in range(1, 15)]
    root = synthetic.make_imagenet21k(tmp_path / "in21k", wnids, n_per_class=3)
    levels = tmp_path / "levels.csv"
    levels.write_text("wnid,level\n" + "".join(f"{w},1\n" for w in wnids))
    args = ["--imagenet-root", str(root), "--levels", str(levels), "--out", str(tmp_path / "s")]
    args.append("--quiet")
    assert main([*args, "--n-test", "2", "--min-train", "4", "--exclude-small"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 700, err
    assert "L1" in err and "and 9 more" in err
    assert "--n-test" in err and "--min-train" in err and "--min-images" in err
    assert not (tmp_path / "s").exists()
    assert main([*args, "--n-test", "1", "--min-train", "2"]) == 0


def test_tldr_next_step_keeps_random_init(monkeypatch, capsys, tmp_path):
    tldr = pytest.importorskip("cog.bench.compress")
    from cog.cli.tldr import main

    monkeypatch.setenv("COG_HOME", str(tmp_path))
    monkeypatch.setattr(
        tldr,
        "compress_model",
        lambda *a, **k: {
            "name": "m+tldr8",
            "path": tmp_path / "p.pt",
            "sha256": "0" * 64,
            "card": tmp_path / "m+tldr8.yaml",
            "fit_info": {"n_samples": 10, "input_dim": 16},
        },
    )
    assert main(["fit", "m", "--dim", "8", "--random-init"]) == 0
    assert "evaluate it with: cog-eval m+tldr8 --random-init" in capsys.readouterr().out


def test_built_levels_and_splits_are_found_without_paths(tmp_path, monkeypatch):
    """One rule: outputs under ./results; what the user built there wins over the shipped
    splits/, which no command writes by default."""
    from cog.bench.config import levels_file, splits_file
    from cog.cli.build_levels import parser as levels_parser
    from cog.cli.build_splits import parser as splits_parser
    from cog.io import SHIPPED_DIR, default_levels, default_splits

    monkeypatch.chdir(tmp_path)
    assert levels_parser().parse_args([]).out == Path("results/levels")
    assert splits_parser().parse_args(["--imagenet-root", "x"]).out == Path("results/splits")
    assert default_levels() == SHIPPED_DIR / "levels"  # nothing built yet
    (tmp_path / "results" / "levels").mkdir(parents=True)
    (tmp_path / "results" / "levels" / "levels.csv").write_text("wnid,level\n")
    (tmp_path / "results" / "splits").mkdir()
    (tmp_path / "results" / "splits" / "cog_concepts_split_file.pkl").write_bytes(b"x")
    assert default_levels() == Path("results/levels")
    assert levels_file(None) == Path("results/levels/levels.csv")
    assert splits_file(None) == Path("results/splits/cog_concepts_split_file.pkl")
    assert default_splits() == Path("results/splits/cog_concepts_split_file.pkl")
