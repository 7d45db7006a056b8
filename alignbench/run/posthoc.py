"""Work on finished runs from their checkpoints: test metrics again (:func:`evaluate`,
e.g. with more processes) and the interpretability analysis (:func:`analyze`)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from ..analysis.callback import analyse, is_analysis_metric, task_analyses
from .build import build_parts, trainer_config
from .record import ANALYSIS_DATA, RECORD_NAME, code_version, read_record, write_json_atomic


def evaluate(run_dir: str | Path, overrides: list[str] | None = None, checkpoint: str = "best") -> dict[str, float]:
    """Test metrics of a finished run's ``checkpoint`` (``best`` or ``last``), recomputed with
    its recorded config and ``overrides`` (dotted ``key=value``, e.g. ``trainer.devices=2``).
    The run's own files are not touched."""
    import tempfile

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    ckpt = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no such checkpoint (valid: best, last)")
    cfg = OmegaConf.merge(OmegaConf.create(record["config"]), OmegaConf.from_dotlist(list(overrides or [])))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    datamodule, model = build_parts(resolved)
    scratch = tempfile.mkdtemp(prefix="alignbench-evaluate-")
    trainer_cfg = {**trainer_config(resolved["trainer"], model), "logger": False, "enable_checkpointing": False,
                   "default_root_dir": scratch}
    trainer = instantiate(trainer_cfg)
    results = trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt), verbose=False)
    return {k: float(v) for k, v in results[0].items()}


def analyze(run_dir: str | Path, examples: int | None = None, costly_examples: int | None = None,
            checkpoint: str = "best", settings: dict | None = None, data: dict | None = None) -> dict:
    """Recompute the interpretability analysis of a finished run from its checkpoint and
    write it into its ``run.json`` (atomically), with its attention examples; returns the
    updated record. The analysis settings are the record's own (``settings`` replaces them;
    ``examples`` and ``costly_examples`` override single ones), and the record's
    ``config.analysis`` says afterwards which were used. ``data`` replaces the data settings
    that only the analysis reads (``entities_path``, ``karpathy_json``), which the record's
    ``config.data`` then keeps."""
    import torch

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record.get("status") != "completed":
        raise ValueError(f"{run_dir}: run is {record.get('status')!r}, not completed")
    ckpt = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no such checkpoint (valid: best, last)")
    resolved = record["config"]
    changed = {k: v for k, v in (data or {}).items() if (resolved.get("data") or {}).get(k) != v}
    if set(changed) - set(ANALYSIS_DATA):
        raise ValueError(f"data: {sorted(set(changed) - set(ANALYSIS_DATA))} would change the trained model; "
                         f"only the analysis-only settings can change here (valid: {', '.join(ANALYSIS_DATA)})")
    resolved = {**resolved, "data": {**resolved["data"], **changed}}
    datamodule, model = build_parts(resolved)
    if record["task"] not in task_analyses():
        raise ValueError(f"{run_dir}: the {record['task']!r} task has no interpretability analysis yet "
                         f"(valid: {', '.join(task_analyses())})")
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    datamodule.setup("test")
    if settings is None:
        settings = {k: v for k, v in (resolved.get("analysis") or {"examples": 500, "costly_examples": 64,
                                                                    "ig_steps": 16}).items() if k != "enabled"}
    settings = dict(settings)
    if examples is not None:
        settings["examples"] = examples
    if costly_examples is not None:
        settings["costly_examples"] = costly_examples
    # the attention examples too, with the current code's ground truth
    metrics, fields = analyse(model, datamodule, record["task"], run_dir, settings, seed=int(resolved["seed"]))
    # the earlier analysis's metrics go (one it gave that this one does not, e.g. grounding
    # once the truth is gone, would be stale); a record from before analysis_metrics: by name
    earlier = record.get("analysis_metrics")
    stale = set(earlier) if earlier is not None else {k for k in record["metrics"] if is_analysis_metric(k)}
    record["metrics"] = {**{k: v for k, v in record["metrics"].items() if k not in stale}, **metrics}
    record.update(fields)
    record["config"] = {**record["config"], "data": resolved["data"], "analysis": {"enabled": True, **settings}}
    record["analysis_code_version"] = code_version()  # the code of this analysis (training's is code_version)
    write_json_atomic(run_dir / RECORD_NAME, record)
    return record
