"""`cog-eval ... --submit slurm`: one cluster job per model through submitit (the library
dinov2 and VISSL use), waiting for the results or returning the job ids.

A model whose runs are all finished (complete run JSONs with the asked-for seeds) is not
submitted again; a job resumes the unfinished runs of its model (the Evaluator reuses
finished runs and seeds). `--submit local` runs the same jobs as local processes through
submitit's local executor (tests, one big machine).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cog import CogError
from cog.bench.batch import Outcome, Unit, run_units
from cog.bench.config import EvalConfig, _now, run_path
from cog.bench.leaderboard import leaderboard_model_name
from cog.io import atomic_write

CLUSTERS = ("slurm", "local")


@dataclass
class JobOptions:
    """Resources of one job (one model); None leaves submitit's or the cluster's default."""

    cluster: str = "slurm"
    folder: Path = Path("results/submitit")
    partition: str | None = None
    gpus: int = 1
    cpus: int | None = None
    time_min: int = 24 * 60
    mem_gb: float | None = None
    wait: bool = True


def finished(cfg: EvalConfig, units: Sequence[Unit]) -> bool:
    """Every run JSON of these units exists, is complete and has the asked-for seeds."""
    for u in units:
        name = leaderboard_model_name(u.model, cfg.random_init)
        p = run_path(cfg.out, name, u.dataset, u.setting, u.n_shot, cfg.protocol)
        try:
            rec = json.loads(Path(p).read_text())
        except (OSError, ValueError):
            return False
        if not rec.get("complete") or [int(s) for s in rec.get("seeds", [])] != list(cfg.seeds):
            return False
    return True


def job(cfg: EvalConfig, units: list[Unit]) -> list[Outcome]:
    """What runs on the cluster node: the model's units, no progress bars."""
    quiet = dataclasses.replace(cfg.extraction, progress=False)
    return run_units(dataclasses.replace(cfg, extraction=quiet), units, echo=print)


def executor(opts: JobOptions):
    try:
        import submitit
    except ImportError:
        raise CogError("--submit needs submitit: pip install submitit") from None
    if opts.cluster not in CLUSTERS:
        raise CogError(f"--submit {opts.cluster!r}: choose one of {', '.join(CLUSTERS)}")
    ex = submitit.AutoExecutor(folder=str(opts.folder), cluster=opts.cluster)
    params: dict = {"timeout_min": opts.time_min, "name": "cog-eval", "nodes": 1}
    params["gpus_per_node"] = opts.gpus
    params["tasks_per_node"] = 1
    if opts.cpus is not None:
        params["cpus_per_task"] = opts.cpus
    if opts.mem_gb is not None:
        params["mem_gb"] = opts.mem_gb
    if opts.partition is not None:
        params["slurm_partition"] = opts.partition
    ex.update_parameters(**params)
    return ex


def submit(
    cfg: EvalConfig,
    units: Sequence[Unit],
    opts: JobOptions,
    echo: Callable[[str], None] = print,
) -> tuple[list[Outcome], list[str]]:
    """Submit one job per unfinished model; (outcomes when waiting, job ids)."""
    by_model: dict[str, list[Unit]] = {}
    for u in units:
        by_model.setdefault(u.model, []).append(u)
    todo = {m: us for m, us in by_model.items() if cfg.force or not finished(cfg, us)}
    for m in by_model:
        if m not in todo:
            echo(f"{m}: every run is finished; not submitted (--force redoes it)")
    outcomes = [
        Outcome(leaderboard_model_name(m, cfg.random_init), "ok", runs=len(by_model[m]))
        for m in by_model
        if m not in todo
    ]
    if not todo:
        return outcomes, []
    ex = executor(opts)
    with ex.batch():
        jobs = {m: ex.submit(job, cfg, us) for m, us in todo.items()}
    ids = [j.job_id for j in jobs.values()]
    record = {
        "cluster": opts.cluster,
        "folder": str(opts.folder),
        "submitted": _now(),
        "jobs": {m: j.job_id for m, j in jobs.items()},
    }
    with atomic_write(Path(cfg.out) / "submitted.json") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    for m, j in jobs.items():
        echo(f"{m}: job {j.job_id} (logs in {opts.folder})")
    if not opts.wait:
        return outcomes, ids
    for m, j in jobs.items():
        try:
            outcomes.extend(j.result())
        except Exception as e:  # the job itself died (time limit, node failure, ...)
            msg = f"job {j.job_id}: {job_error(e)}"
            outcomes.append(
                Outcome(leaderboard_model_name(m, cfg.random_init), "failed", error=msg)
            )
    return outcomes, ids


_RAISED = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)): ")
_LOG = re.compile(r"^-\s+(/.+)$")


def job_error(e: BaseException) -> str:
    """The line of a failed job's error that says what went wrong. submitit ends the
    message of a job that raised with its log paths (`- /path/..._log.err`): then the last
    `SomethingError: ...` line is taken, with the stderr log for the traceback. Any other
    message (a time limit, a node failure) is its last line."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return repr(e)
    logs = []
    while lines and (m := _LOG.match(lines[-1])):
        logs.insert(0, m.group(1))
        lines.pop()
    raised = [ln for ln in lines if _RAISED.match(ln)]
    if not logs:  # a separator line says nothing: the error above it does
        return lines[-1] if any(c.isalnum() for c in lines[-1]) or not raised else raised[-1]
    what = raised[-1] if raised else (lines[-1] if lines else "the job failed")
    log = next((p for p in logs if p.endswith(".err")), logs[-1])
    return f"{what} (log: {log})"
