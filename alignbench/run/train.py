"""Training entry point: wires the composed config into data, model, trainer and a run record."""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..config import run_label
from ..analysis.callback import InterpretabilityCallback
from ..ranges import NonNegativeFloat, PositiveInt
from .build import build_parts, rank_zero, trainer_config
from .record import (RECORD_NAME, code_version, config_hash, library_versions, read_record, recorded_config,
                     write_json_atomic)
from .resume import (analysis_current, analysis_data, analysis_settings, clear_stale, completed_record, find_completed,
                     find_resumable, resumable_record)

log = logging.getLogger("alignbench")
FAILED_RUNS: list[str] = []  # run dirs of failed runs in this process (a sweep goes on past them)
INTERRUPTED_RUNS: list[str] = []  # run dirs of runs stopped by Ctrl-C or SIGTERM in this process


class HistoryCallback(pl.Callback):
    """Collects the validation metrics of every epoch for the run record."""

    def __init__(self, on_epoch: Callable[[], None] | None = None) -> None:
        self.on_epoch = on_epoch  # called after every epoch (the record is rewritten with the progress)
        self.history: list[dict[str, float]] = []
        self.earlier_seconds = 0.0  # training time before a resume
        self._start: float | None = None

    @property
    def train_seconds(self) -> float:
        running = 0.0 if self._start is None else time.perf_counter() - self._start
        return self.earlier_seconds + running

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        # a resumed run redoes the epoch it was stopped in: drop what was kept of it
        self.history = [h for h in self.history if h["epoch"] < trainer.current_epoch]

    def on_train_end(self, trainer, pl_module) -> None:
        self.earlier_seconds, self._start = self.train_seconds, None

    def _row(self, epoch: int) -> dict:
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history.append({"epoch": epoch})
        return self.history[-1]

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics.items()
        self._row(trainer.current_epoch).update({k: float(v) for k, v in metrics if k.startswith("val/")})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # runs after this epoch's validation, once the epoch's train metrics are aggregated
        metrics = trainer.callback_metrics.items()
        self._row(trainer.current_epoch).update({k: float(v) for k, v in metrics if k.startswith("train/")})
        if self.on_epoch is not None and trainer.is_global_zero:
            self.on_epoch()


def early_stopping_settings(patience: PositiveInt | None = None, min_delta: NonNegativeFloat = 0.0) -> dict:
    """The ``early_stopping`` settings of a run (checked against this signature before it runs)."""
    return {"patience": patience, "min_delta": min_delta}


class FloorEarlyStopping(pl.callbacks.EarlyStopping):
    """Lightning's early stopping that never decides to stop before ``trainer.min_epochs``.

    Lightning's own keeps a stop decided below the floor and carries it out at the floor,
    however much the metric improved in between. Here the epochs below the floor update the
    best value and the count of epochs without improvement as usual, but decide nothing; from
    the floor on, a run stops once that count reaches ``patience``."""

    def _run_early_stopping_check(self, trainer) -> None:
        if trainer.current_epoch + 1 >= (trainer.min_epochs or 0):
            super()._run_early_stopping_check(trainer)
            return
        logs = trainer.callback_metrics
        if not trainer.fast_dev_run and self._validate_condition_metric(logs):
            self._evaluate_stopping_criteria(logs[self.monitor].squeeze())  # best and wait count only


def early_stopping(monitor: str, **settings) -> pl.callbacks.EarlyStopping | None:
    """The ``early_stopping`` settings of a run (:func:`early_stopping_settings`) as a
    callback: stop when the task's monitored validation metric (higher is better) has not
    improved by more than ``min_delta`` for ``patience`` epochs; ``trainer.max_epochs`` stays
    the bound and ``trainer.min_epochs`` the floor (no stop is decided below it).
    ``patience: null`` (the default) trains every epoch."""
    settings = early_stopping_settings(**settings)
    if settings["patience"] is None:
        return None
    return FloorEarlyStopping(monitor=monitor, mode="max", check_finite=True, **settings)


def _utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def train(cfg: DictConfig, run_dir: Path, score_choice: str | None = None) -> dict[str, Any]:
    """Train, validate and test one run; write ``run_dir/run.json``; return the record.

    If ``run_dir`` holds an unfinished run of the same config with a last checkpoint,
    training resumes from it (same epochs in the end; the earlier epochs' history and
    training time are kept). Until the test has run, the record is never ``completed``.
    """
    started, t0 = _utc(), time.perf_counter()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    finished = completed_record(run_dir, config_hash(resolved))
    if (finished is not None and not analysis_current(finished, resolved)
            and (run_dir / "checkpoints" / "best.ckpt").is_file()):
        # trained with this config, analysed with other settings: analyse again, do not retrain
        try:
            return reanalyse(run_dir, resolved)
        except Exception as err:  # noqa: BLE001 - the completed record on disk stays as it was
            log.error("analysing %s again failed: %s: %s", run_dir, type(err).__name__, err)
            return {**finished, "status": "failed", "error": f"analysing again: {type(err).__name__}: {err}"}
    previous = resumable_record(run_dir, config_hash(resolved))
    label, baseline = run_label(score_choice, str(cfg.score.get("_target_", "")), resolved["model"])
    record: dict[str, Any] = {
        "task": cfg.task.name, "data": cfg.data.name, "score": label, "baseline": baseline,
        "seed": int(cfg.seed), "status": "running", "error": None, "metrics": {}, "history": [],
        "params": None, "score_params": None, "wall_seconds": None, "train_seconds": None,
        "config": recorded_config(resolved), "config_hash": config_hash(resolved), "versions": library_versions(),
        "code_version": code_version(), "started": started, "finished": None,
    }
    writer = rank_zero()

    def write_record() -> None:
        if writer:  # under DDP only global rank 0 writes the record
            write_json_atomic(run_dir / RECORD_NAME, record)

    def save_progress() -> None:
        record["history"], record["train_seconds"] = history.history, history.train_seconds
        write_record()

    history = HistoryCallback(save_progress)
    resume_from = None
    if previous is None:
        if writer:  # what an earlier run of this folder left (no best-v1.ckpt beside an old best)
            clear_stale(run_dir)
    else:
        resume_from = str(run_dir / "checkpoints" / "last.ckpt")
        record["started"], record["resumed"] = previous.get("started", started), previous.get("resumed", 0) + 1
        history.history = list(previous.get("history") or [])
        history.earlier_seconds = float(previous.get("train_seconds") or 0.0)
        log.info("resuming the unfinished run in %s from its last checkpoint", run_dir)
    write_record()
    try:
        if cfg.task.name not in cfg.data.tasks:
            raise ValueError(f"data {cfg.data.name!r} has no {cfg.task.name!r} view; it supports: "
                             f"{', '.join(cfg.data.tasks)}")
        datamodule, model = build_parts(resolved)
        record["params"] = sum(p.numel() for p in model.parameters())
        record["score_params"] = model.score_parameters
        record["data_sizes"] = datamodule.sizes()
        checkpoint = pl.callbacks.ModelCheckpoint(
            dirpath=run_dir / "checkpoints", monitor=cfg.task.monitor, mode="max", save_last=True, filename="best"
        )
        trainer_cfg = trainer_config(resolved["trainer"], model)
        settings = dict(resolved.get("analysis") or {})
        analysis = InterpretabilityCallback(cfg.task.name, run_dir, settings if settings.pop("enabled", False) else None,
                                            seed=int(cfg.seed))
        stopper = early_stopping(cfg.task.monitor, **(resolved.get("early_stopping") or {}))
        callbacks = [history, checkpoint, analysis] + ([stopper] if stopper is not None else [])
        trainer = instantiate(trainer_cfg, default_root_dir=str(run_dir), callbacks=callbacks,
                              logger=pl.loggers.CSVLogger(str(run_dir), name="logs", version=""))
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        # read before the test, which restores the callbacks' states from the best checkpoint
        epochs = trainer.current_epoch
        stopped_early = bool(stopper is not None and stopper.stopped_epoch > 0 and epochs < (trainer.max_epochs or 0))
        results = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)
        record["metrics"] = {**{k: float(v) for k, v in results[0].items()}, **analysis.metrics}
        record.update(analysis.fields)
        record["status"] = "completed"
        record["epochs"], record["stopped_early"] = epochs, stopped_early
        n_train = record["data_sizes"]["train"] * epochs
        record["train_examples_per_second"] = n_train / history.train_seconds if history.train_seconds else None
    except Exception as err:  # noqa: BLE001 - recorded, then re-raised by the caller's policy
        record["status"] = "failed"
        record["error"] = f"{type(err).__name__}: {err}"
        record["traceback"] = traceback.format_exc(limit=-8)
        log.error("run failed: %s", record["error"])
    except BaseException as err:  # Ctrl-C / SIGTERM: say so in the record, then stop
        record["status"] = "interrupted"
        record["error"] = f"{type(err).__name__}: {err}"
        INTERRUPTED_RUNS.append(str(run_dir))
        raise
    finally:
        record["history"] = history.history
        record["train_seconds"] = history.train_seconds or None
        record["wall_seconds"] = time.perf_counter() - t0
        record["finished"] = _utc()
        write_record()
    return record


def reanalyse(run_dir: Path, resolved: dict) -> dict[str, Any]:
    """The interpretability analysis of a completed run, again from its best checkpoint with
    the analysis settings and analysis-only data settings of ``resolved`` (which then become
    the record's); returns the record."""
    from .posthoc import analyze

    log.info("the run in %s is trained with this config but analysed with other settings: analysing again "
             "from its checkpoint", run_dir)
    return analyze(run_dir, settings=analysis_settings(resolved), data=analysis_data(resolved))


def search_roots(cfg: DictConfig, hc) -> list[Path]:
    """Where earlier runs of this command may be: the sweep folder (``hydra.sweep.dir``,
    wherever it was set) in a sweep, and ``output_root``."""
    from hydra.types import RunMode

    roots = [Path(hc.sweep.dir)] if hc.mode == RunMode.MULTIRUN else []
    return roots + [Path(cfg.output_root)]


def hydra_entry(cfg: DictConfig) -> float | None:
    """Body of the Hydra app: one run in Hydra's run directory.

    In a sweep (``-m``) with ``skip_completed`` on, a job whose config already has a
    completed record in the sweep folder or under ``output_root`` is skipped, so a re-run
    sweep resumes (the rule of :func:`alignbench.run.resume.completed_record`, shared with
    ``alignbench compare``).
    """
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    wanted = config_hash(resolved)
    monitor = cfg.task.monitor.replace("val/", "test/")
    if hc.mode == RunMode.MULTIRUN and cfg.get("skip_completed", False):
        done = run_dir if completed_record(run_dir, wanted) else find_completed(search_roots(cfg, hc), wanted)
        if done is not None:
            record = read_record(done)
            current = analysis_current(record, resolved)
            if current or not (done / "checkpoints" / "best.ckpt").is_file():
                log.info("skipped: the same config already completed in %s%s", done, "" if current else
                         " (its analysis settings or grounding truth differ, but it has no checkpoint to analyse "
                         "again from)")
                return record["metrics"].get(monitor)
            run_dir = done  # trained, but analysed with other settings: train() analyses it again
    if resumable_record(run_dir, wanted) is None:  # a single run gets a new folder: look for an unfinished one
        run_dir = find_resumable(search_roots(cfg, hc), wanted) or run_dir
    record = train(cfg, run_dir, hc.runtime.choices.get("score"))
    if record["status"] != "completed":
        FAILED_RUNS.append(str(run_dir))
        if hc.mode == RunMode.RUN:
            raise SystemExit(f"alignbench: run failed ({record['error']}); record: {run_dir / RECORD_NAME}")
        return None
    log.info("run.json: %s", run_dir / RECORD_NAME)
    return record["metrics"].get(monitor)
