"""Many models in one `cog-eval`: selection, the run list, shards, and a run that goes on
past a failing model.

The run list is every (model, dataset, setting) unit in a fixed order; a shard takes a
contiguous block of it (`--shard I/N`, or torchrun's RANK/WORLD_SIZE, or a SLURM job array's
SLURM_ARRAY_TASK_ID/COUNT), so runs of one model stay together and share its feature
caches. Shards write the same run JSONs and leaderboard rows one process would (the
leaderboard update is locked), so N shards give the leaderboard of one process.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cog import CogError
from cog.bench.config import EvalConfig, _now, resolve_datasets
from cog.bench.evaluate import Evaluator, summary_table
from cog.io import atomic_write

GLOB = set("*?[")
LOCK_WAIT_S = 3600.0  # how long a shard waits for another shard extracting the same cache


# ---------------------------------------------------------------- which models


def read_model_file(path: Path) -> list[str]:
    """Names in a text file, one a line; blank lines and `#` comments are skipped."""
    if not Path(path).is_file():
        raise CogError(f"--models-file {path}: no such file (one model name a line)")
    lines = (ln.split("#", 1)[0].strip() for ln in Path(path).read_text().splitlines())
    return [ln for ln in lines if ln]


def select_models(
    specs: Sequence[str],
    *,
    group: str | None = None,
    everything: bool = False,
    file: Path | None = None,
) -> list[str]:
    """Zoo names from names, aliases, glob patterns (`'dino_*'`), a group, a file or all;
    in the order given, each once. An unknown name or a pattern matching nothing fails."""
    from cog import zoo

    wanted = list(specs) + (read_model_file(file) if file is not None else [])
    names: list[str] = []
    if everything:
        names += zoo.list_models()
    if group is not None:
        names += zoo.list_models(group)
    for spec in wanted:
        if GLOB & set(spec):
            hits = [
                n
                for n in zoo.list_models()
                if fnmatch.fnmatch(n, spec)
                or any(fnmatch.fnmatch(a, spec) for a in zoo.get_card(n).aliases)
            ]
            if not hits:
                raise CogError(f"pattern {spec!r} matches no model (`cog-models list` shows all)")
            names += hits
        else:
            names.append(zoo.get_card(spec).name)
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------- the run list and shards


@dataclass(frozen=True, order=True)
class Unit:
    """One run: a model on a dataset in a setting (n_shot 0 for all data)."""

    model: str
    dataset: str
    setting: str
    n_shot: int

    @property
    def task(self) -> tuple[str, str, int]:
        return (self.dataset, self.setting, self.n_shot)


def run_list(models: Sequence[str], cfg: EvalConfig) -> list[Unit]:
    datasets = resolve_datasets(cfg)
    units = []
    for m in models:
        for ds in datasets:
            units.append(Unit(m, ds, "all", 0))
            if cfg.few_shot:
                units.extend(Unit(m, ds, "few-shot", n) for n in sorted(cfg.shots))
    return units


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` with 0 <= I < N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise CogError(f"--shard {text!r}: give I/N, e.g. 0/4 (I from 0 to N-1)") from None
    if n < 1 or not 0 <= i < n:
        raise CogError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
    return i, n


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int, str] | None:
    """(index, count, where) from torchrun or a SLURM job array, else None."""
    env = dict(os.environ if env is None else env)
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        i, n = int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
        where = "SLURM_ARRAY_TASK_ID/COUNT"
    elif "RANK" in env and "WORLD_SIZE" in env:
        i, n, where = int(env["RANK"]), int(env["WORLD_SIZE"]), "RANK/WORLD_SIZE"
    else:
        return None
    if n < 1 or not 0 <= i < n:
        raise CogError(f"{where} = {i}/{n}: the index must be in 0..count-1")
    return i, n, where


def shard(units: Sequence[Unit], i: int, n: int) -> list[Unit]:
    """Shard `i` of `n`: a contiguous block (sizes differ by one at most)."""
    k = len(units)
    return list(units[i * k // n : (i + 1) * k // n])


# ---------------------------------------------------------------- running


class UnitEvaluator(Evaluator):
    """An Evaluator restricted to some of its model's runs (a shard's share)."""

    def __init__(self, cfg: EvalConfig, tasks: set[tuple[str, str, int]]):
        self.only = tasks
        super().__init__(cfg)

    def _tasks(self) -> list[tuple[str, str, int]]:
        return [t for t in super()._tasks() if t in self.only]


@dataclass
class Outcome:
    model: str
    status: str  # ok, failed
    runs: int = 0
    written: int = 0
    reused: int = 0
    error: str = ""
    seconds: float = 0.0
    records: list = dataclasses.field(default_factory=list, repr=False)


def _run_model(cfg: EvalConfig, units: list[Unit]) -> Outcome:
    """Evaluate one model's units; waits (up to LOCK_WAIT_S) while another shard extracts a
    cache this one needs, then reuses it."""
    t0 = time.perf_counter()
    datasets = tuple(dict.fromkeys(u.dataset for u in units))
    mcfg = dataclasses.replace(cfg, model=units[0].model, datasets=datasets)
    while True:
        ev = UnitEvaluator(mcfg, {u.task for u in units})
        try:
            records = ev.run()
            break
        except CogError as e:
            if "another process" not in str(e) or time.perf_counter() - t0 > LOCK_WAIT_S:
                raise
            time.sleep(2.0)
    return Outcome(
        ev.name,
        "ok",
        runs=len(records),
        written=len(ev.written),
        reused=len(ev.reused),
        seconds=time.perf_counter() - t0,
        records=records,
    )


def run_units(
    cfg: EvalConfig, units: Sequence[Unit], echo: Callable[[str], None] = print
) -> list[Outcome]:
    """Each model's units in turn; a failing model is recorded (message, traceback in its
    `failed.json`) and the next one runs."""
    from cog.bench.leaderboard import leaderboard_model_name

    by_model: dict[str, list[Unit]] = {}
    for u in units:
        by_model.setdefault(u.model, []).append(u)
    out = []
    for model, mine in by_model.items():
        name = leaderboard_model_name(model, cfg.random_init)
        failed = Path(cfg.out) / "runs" / name / "failed.json"
        try:
            res = _run_model(cfg, mine)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            msg = str(e) if isinstance(e, CogError) else f"{type(e).__name__}: {e}"
            print(f"error: {model}: {msg}", file=sys.stderr)
            res = Outcome(name, "failed", error=msg)
            with atomic_write(failed) as f:
                json.dump(
                    {
                        "model": name,
                        "error": msg,
                        "traceback": traceback.format_exc(),
                        "runs": [dataclasses.asdict(u) for u in mine],
                        "when": _now(),
                    },
                    f,
                    indent=2,
                )
            out.append(res)
            continue
        failed.unlink(missing_ok=True)
        echo(f"{res.model}: {res.written} runs written, {res.reused} reused")
        echo(summary_table(res.records))
        out.append(res)
    return out


def outcome_table(outcomes: Sequence[Outcome]) -> str:
    """One line per model: status, runs, in1k and mean CoG top-1 (all data), or the error."""
    import numpy as np

    lines = [f"{'model':<32} {'status':<7} {'runs':>4} {'in1k':>7} {'CoG avg':>8}"]
    for o in outcomes:
        top1 = {
            r["dataset"]: r["probe"]["top1"]["mean"] for r in o.records if r["setting"] == "all"
        }
        levels = [v for d, v in top1.items() if d != "in1k"]
        in1k = f"{top1['in1k']:.2f}" if "in1k" in top1 else "-"
        cog = f"{np.mean(levels):.2f}" if levels else "-"
        line = f"{o.model:<32} {o.status:<7} {o.runs:>4} {in1k:>7} {cog:>8}"
        if o.error:
            line += f"  {o.error.splitlines()[0][:120]}"
        lines.append(line)
    return "\n".join(lines)


def write_summary(path: Path, outcomes: Sequence[Outcome], extra: dict) -> None:
    doc = {
        **extra,
        "finished": _now(),
        "models": [
            {k: v for k, v in dataclasses.asdict(o).items() if k != "records"} for o in outcomes
        ],
        "failed": [o.model for o in outcomes if o.status == "failed"],
    }
    with atomic_write(path) as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
