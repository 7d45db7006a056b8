"""Interpretability as a Lightning callback: once testing is over, the task's analysis runs on the
tested model (rank zero, on the CPU) and the first test items' attention is saved beside
the run record. ``alignbench analyze`` runs the same :func:`analyse` on a checkpoint."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytorch_lightning as pl

from .examples import save_attention_examples
from .protocol import TaskAnalysis

log = logging.getLogger("alignbench")

# the measures the analyses give (``test/<name>``, text-to-image also per stage: ``<name>_<side>px``)
ANALYSIS_METRICS = ("pointing_acc", "pointing_chance", "attn_mass_gt", "attn_mass_chance", "aopc_gain", "flip_rate",
                    "tau_ig", "tau_loo")
_ANALYSIS_NAME = re.compile(rf"test/({'|'.join(ANALYSIS_METRICS)})(_\d+px)?")


def is_analysis_metric(name: str) -> bool:
    """Whether a record's metric ``name`` is one an analysis gives (for records from before
    ``analysis_metrics`` named them)."""
    return _ANALYSIS_NAME.fullmatch(name) is not None


def task_analyses() -> dict[str, TaskAnalysis]:
    """The registered analyses, by task name."""
    from . import TASK_ANALYSES

    return TASK_ANALYSES


def analyse(model, datamodule, task: str, run_dir: str | Path | None, settings: dict | None,
            seed: int) -> tuple[dict, dict]:
    """Run ``task``'s analysis of ``model`` (in eval mode, on the CPU): the attention examples
    go into ``run_dir`` (when given), the measures run when ``settings`` (the run's
    ``analysis`` config without ``enabled``) are given. Returns the test metrics and the
    record fields ``analysis`` (deletion curves, examples used), ``analysis_seconds`` and
    ``analysis_metrics`` (the names of the metrics it gave, so an analysis done again
    replaces them all); empty for a task without an analysis."""
    hooks = task_analyses().get(task)
    if hooks is None:
        return {}, {}
    model = model.cpu()
    training = model.training
    model.eval()
    try:
        if run_dir is not None:
            found = hooks.examples(model, datamodule)
            if found is not None:
                save_attention_examples(run_dir, *found)
        if settings is None:
            return {}, {}
        if hooks.prepare is not None:
            hooks.prepare(model, datamodule)
        result = hooks.measure(model, datamodule, seed=seed, **settings)
    finally:
        model.train(training)
    return result["metrics"], {"analysis": result["deletion"], "analysis_seconds": result["seconds"],
                               "analysis_metrics": sorted(result["metrics"])}


class InterpretabilityCallback(pl.Callback):
    """When ``trainer.test`` tears down (outside its inference mode): the attention examples into ``run_dir`` and, with ``settings``,
    the task's interpretability measures, kept in :attr:`metrics` and :attr:`fields` for the
    run record. Only global rank zero analyses."""

    def __init__(self, task: str, run_dir: str | Path, settings: dict | None, seed: int) -> None:
        self.task, self.run_dir, self.settings, self.seed = task, Path(run_dir), settings, seed
        self.metrics: dict[str, float] = {}
        self.fields: dict = {}

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # after the test loop has closed its inference-mode context (integrated gradients needs autograd)
        if stage != "test" or not trainer.is_global_zero:
            return
        self.metrics, self.fields = analyse(pl_module, trainer.datamodule, self.task, self.run_dir, self.settings,
                                            self.seed)
