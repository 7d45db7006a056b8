"""``alignbench compare``: the default comparison experiment, then its report.

The experiment is a Hydra config, ``experiments/compare.yaml``: which tasks, which scores,
how many seeds, and the ``preset`` that sizes the runs: the training presets
``conf/preset/compare/<preset>/<task>.yaml`` (so ``alignbench train
preset=compare/default/vqa score=ban seed=0`` reproduces one job). Every (task, score, seed) job is an ordinary
``alignbench train`` run in its own fixed folder ``<out>/runs/<task>/<score>/seed<n>``;
a job whose ``run.json`` is ``completed`` with the same ``config_hash`` is skipped and one
that was stopped mid-training resumes from its last checkpoint, so an interrupted
comparison resumes where it stopped. A failed job leaves its ``failed``
record and the others go on. Jobs run ``jobs`` at a time as separate processes (one
thread each when ``jobs > 1``); the first job of each task runs before that task's
others, so that data caches and the text-to-image evaluators are built once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import group_options
from .run.preflight import ConfigError, check_score_target, compose_run, first_line, search_path_of
from .run.record import config_hash, read_record
from .run.resume import analysis_current, clear_stale, completed_record, resumable_record

import alignbench.experiments as _experiments  # noqa: E402 - experiments/ ships as alignbench.experiments

EXPERIMENTS_DIR = Path(_experiments.__file__).resolve().parent


@dataclass
class Job:
    task: str
    score: str
    seed: int
    overrides: list[str]
    run_dir: Path
    config_hash: str = ""  # of the composed training config (filled by :func:`plan`)
    config: DictConfig | None = field(default=None, repr=False)  # that config, composed once by :func:`plan`
    resolved: dict = field(default_factory=dict, repr=False)  # and resolved

    @property
    def label(self) -> str:
        return f"{self.task} {self.score} seed{self.seed}"


def compose_experiment(overrides: list[str]) -> DictConfig:
    """The comparison config (``experiments/compare.yaml`` + ``overrides``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(EXPERIMENTS_DIR), version_base="1.3"):
        return compose("compare", overrides=overrides)


def score_overrides(score: str) -> list[str]:
    """The training overrides that select ``score``: a config name (built-in, or a YAML on
    the user's ``hydra.searchpath``) or a class path ``pkg.module.Class`` (``score._target_``)."""
    return [f"score._target_={score}"] if "." in score else [f"score={score}"]


def score_folder(score: str) -> str:
    """The folder name of a score's runs: its config name, or its class name."""
    return score.rsplit(".", 1)[-1]


def plan(cfg: DictConfig) -> list[Job]:
    """Every job of the experiment, task by task, in score and seed order.

    ``cfg.train`` may hold ``hydra.searchpath=[file://DIR]``: the score YAMLs in
    ``DIR/score/`` are then valid names (and part of ``scores=[all]``) for every run.
    """
    search_path = search_path_of(list(cfg.train))
    valid_tasks = group_options("task")
    valid_scores = group_options("score", search_path)
    tasks = list(cfg.tasks)
    scores = valid_scores if list(cfg.scores) == ["all"] else list(cfg.scores)
    preset = str(cfg.preset)
    sized = [o.split("/")[2] for o in group_options("preset", search_path) if o.startswith(f"compare/{preset}/")]
    for task in tasks:
        if task not in valid_tasks:
            raise ValueError(f"unknown task {task!r}; valid choices: {', '.join(valid_tasks)}")
        if task not in sized:
            raise ValueError(f"preset {preset!r} has no settings for task {task!r} "
                             f"(conf/preset/compare/{preset}/{task}.yaml)")
    for score in scores:
        if "." in score:
            try:
                check_score_target(score)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        elif score not in valid_scores:
            raise ValueError(f"unknown score {score!r}; valid choices: {', '.join(valid_scores)} "
                             "(or a class path such as my_pkg.scores.MyScore; a YAML of your own needs "
                             "hydra.searchpath=[file://DIR])")
    if len({score_folder(s) for s in scores}) != len(scores):
        raise ValueError(f"two scores share a name: {', '.join(scores)}")
    if cfg.get("ref") is not None and str(cfg.ref) not in [score_folder(s) for s in scores]:
        raise ValueError(f"ref {cfg.get('ref')!r} is not one of the compared scores; valid choices: "
                         f"{', '.join(score_folder(s) for s in scores)}")
    if int(cfg.seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {cfg.seeds!r}")
    if int(cfg.jobs) < 1:
        raise ValueError(f"jobs must be >= 1 (runs at a time), got {cfg.jobs!r}")
    if int(cfg.first_seed) < 0:
        raise ValueError(f"first_seed must be >= 0, got {cfg.first_seed!r}")
    out = Path(cfg.out)
    seeds = range(int(cfg.first_seed), int(cfg.first_seed) + int(cfg.seeds))
    jobs = []
    for task in tasks:
        rows = [(score_folder(score), score_overrides(score)) for score in scores]
        rows += [(name, list(extra)) for name, extra in (cfg.get("baselines") or {}).get(task, {}).items()]
        for name, selected in rows:
            for seed in seeds:
                overrides = [f"task={task}", f"preset=compare/{preset}/{task}", *selected, f"seed={seed}",
                             *cfg.train]
                try:
                    composed = compose_run(overrides)
                    resolved = OmegaConf.to_container(composed, resolve=True)
                except Exception as err:  # noqa: BLE001 - a bad override: one line naming it
                    raise ValueError(first_line(err)) from None
                jobs.append(Job(task, name, seed, overrides, out / "runs" / task / name / f"seed{seed}",
                                config_hash(resolved), composed, resolved))
    return jobs


def compare_presets(search_path: list[str] | None = None) -> list[str]:
    """The comparison presets: the folders of ``conf/preset/compare/``."""
    return sorted({o.split("/")[1] for o in group_options("preset", search_path) if o.startswith("compare/")
                   and o.count("/") == 2})


def job_state(job: Job) -> tuple[str, dict | None]:
    """``done`` (a completed record of the same config, analysed with the same settings, or
    with no checkpoint to analyse it again from: committed records keep none and are never
    retrained for that), ``done-stale`` (the latter), ``reanalyse`` (trained; only its
    analysis is outdated) or ``run`` (the rules sweeps use too), with the completed record
    (None for ``run``)."""
    record = completed_record(job.run_dir, job.config_hash)
    if record is None:
        return "run", None
    if analysis_current(record, job.resolved):
        return "done", record
    return ("reanalyse" if (job.run_dir / "checkpoints" / "best.ckpt").is_file() else "done-stale"), record


# a worker is `alignbench train` in the interpreter that runs `compare`, importing the same
# alignbench: the folder it was imported from goes first on sys.path, and the current folder
# (which `python -m` would put first) is left out, so that no other alignbench/ is imported
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
WORKER = ("import sys; root = sys.argv.pop(1); "
          "sys.path = [root] + [p for p in sys.path if p not in ('', '.', root)]; "
          "from alignbench.cli import main; sys.exit(main())")
_WORKERS: set[subprocess.Popen] = set()  # the `alignbench train` processes running now
_LOCK = threading.Lock()


def run_job(job: Job, threads: int | None, reanalyse: bool = False) -> tuple[str, float]:
    """Run one job as an ``alignbench train`` process (``reanalyse``: a trained run whose
    analysis alone is outdated, :func:`job_state`); returns its status and seconds."""
    stale = resumable_record(job.run_dir, job.config_hash) is None and not reanalyse
    if job.run_dir.exists() and stale:
        clear_stale(job.run_dir)  # a failed or outdated run: start it afresh (an unfinished one resumes)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    args = [sys.executable, "-c", WORKER, PACKAGE_ROOT, "train", *job.overrides, "trainer.enable_progress_bar=false",
            f"hydra.run.dir={job.run_dir}"]
    t0 = time.perf_counter()
    with open(job.run_dir / "stdout.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        with _LOCK:
            _WORKERS.add(process)
        try:
            process.wait()
        finally:
            with _LOCK:
                _WORKERS.discard(process)
    try:
        status = read_record(job.run_dir).get("status", "unknown")
    except (OSError, ValueError):
        status = "failed (no record; see stdout.log)"
    return status, time.perf_counter() - t0


class Interrupted(Exception):
    """``compare`` was stopped (Ctrl-C, SIGTERM); ``jobs`` were running and have been stopped."""

    def __init__(self, jobs: list[Job]) -> None:
        super().__init__(", ".join(j.label for j in jobs))
        self.jobs = jobs


def stop_workers(grace: float = 60.0) -> None:
    """Send SIGTERM to every running worker (its record then says ``interrupted``, resumable from
    its last checkpoint), wait up to ``grace`` seconds for each, then kill what is left."""
    with _LOCK:
        workers = list(_WORKERS)
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in workers:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Durations:
    """How long the runs of each task take, for the estimate of the time left: a task's mean
    over its completed runs, or the mean over every task's while it has none yet."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def add(self, task: str, seconds: float | None) -> None:
        if seconds is not None and seconds > 0:
            self.seconds.setdefault(task, []).append(float(seconds))

    def estimate(self, task: str) -> float | None:
        known = self.seconds.get(task) or [s for values in self.seconds.values() for s in values]
        return sum(known) / len(known) if known else None

    def remaining(self, waiting: list[Job], running: list[tuple[Job, float]], width: int) -> float | None:
        """Seconds until ``waiting`` jobs and the ``running`` ones (with the seconds they have
        run) are done on ``width`` lanes; ``None`` before any run has a duration to go by."""
        if not self.seconds:
            return None
        total = sum(self.estimate(job.task) for job in waiting)
        total += sum(max(self.estimate(job.task) - ran, 0.0) for job, ran in running)
        return total / max(width, 1)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def run_comparison(cfg: DictConfig, echo=lambda text: print(text, flush=True),
                   jobs: list[Job] | None = None) -> tuple[Path, list[Job]]:
    """Run (or resume) every job of ``cfg`` (``jobs``: its :func:`plan`, if already made),
    then write the report; returns its path and the jobs that did not complete."""
    from .results import write_report

    jobs = plan(cfg) if jobs is None else jobs
    width = int(cfg.jobs)
    threads = 1 if width > 1 else None
    todo = []
    # seconds a run of each task takes: from the completed records, then from this comparison's runs
    # (a text-to-image run takes several times a grounding one, so one mean over all runs misleads)
    durations, reanalysed = Durations(), set()
    for job in jobs:
        state, record = job_state(job)
        if state.startswith("done"):
            durations.add(job.task, record.get("wall_seconds"))
            echo(f"[skip] {job.label}: completed with the same config" + (
                "; its analysis settings or grounding truth differ, but it has no checkpoint to analyse again from"
                if state == "done-stale" else ""))
        elif state == "reanalyse":
            echo(f"[analyse] {job.label}: trained with the same config; its analysis settings or grounding truth "
                 "changed")
            reanalysed.add(job.label)
            todo.append(job)
        else:
            todo.append(job)
    echo(f"alignbench compare: {len(jobs)} runs ({len(jobs) - len(todo)} already complete), {width} at a time; "
         f"results in {cfg.out}")
    start, finished, failed = time.perf_counter(), 0, []
    started: dict[str, float] = {}  # label → when the job's run began

    def done(job: Job, result: tuple[str, float]) -> None:
        nonlocal finished
        status, seconds = result
        finished += 1
        if status == "completed":
            if job.label not in reanalysed:  # an analysis alone says nothing of a training run's time
                durations.add(job.task, seconds)
        else:
            failed.append(job)
        now = time.perf_counter()
        waiting = ready + [j for jobs_ in held.values() for j in jobs_]
        remaining = durations.remaining(waiting, [(j, now - started[j.label]) for j in running.values()], width)
        left = f", about {_clock(remaining)} left" if remaining is not None else ""
        echo(f"[{finished}/{len(todo)}] {job.label}: {status} in {_clock(seconds)} "
             f"(elapsed {_clock(now - start)}{left})")

    by_task: dict[str, list[Job]] = {}
    for job in todo:
        by_task.setdefault(job.task, []).append(job)
    # each task's first job runs before the task's others (it builds the data caches and the
    # text-to-image evaluators once); jobs of different tasks share the lanes freely
    ready = [jobs_[0] for jobs_ in by_task.values()]
    held = {task: jobs_[1:] for task, jobs_ in by_task.items()}
    with ThreadPoolExecutor(max_workers=width) as pool:
        running: dict = {}
        try:
            while ready or running:
                while ready and len(running) < width:
                    job = ready.pop(0)
                    started[job.label] = time.perf_counter()
                    running[pool.submit(run_job, job, threads, job.label in reanalysed)] = job
                finished_now, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished_now:
                    job = running.pop(future)
                    done(job, future.result())
                    ready.extend(held.pop(job.task, []))
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see alignbench.cli): stop the workers, keep what is done
            stop_workers()
            raise Interrupted(list(running.values())) from None
    report = write_report([Path(cfg.out) / "runs"], Path(cfg.out) / "report", cfg.get("ref"))
    return report, failed
