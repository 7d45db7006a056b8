"""Report figures (matplotlib, PNG) drawn from collected runs only.

Each function writes one PNG and returns its path, or None when the runs hold nothing to
draw. Drawing is deterministic: same runs, same order, same picture.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..files import ATTENTION_FILE
from .collect import RunSet
from .tables import primary_metric, task_metrics

PNG_META = {"Software": None}  # no library version in the file: same runs, same bytes
# figures are built without pyplot, so drawing never changes the caller's matplotlib backend


def subplots(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (6, 4), squeeze: bool = True):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata=PNG_META)
    return path


def metric_bars(task: str, data: str, runs: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path | None:
    """One panel per metric of the task: a point per score (mean) with its 95% bootstrap interval
    over seeds (the std where there is no interval). The value axis spans the data, not 0: the
    differences between scores stay visible."""
    group_runs = runs[(runs["task"] == task) & (runs["data"] == data)]
    specs = [s for s in task_metrics(task, group_runs) if not s[0].startswith("test/vqa_acc/")]
    if not specs:
        return None
    group = summary[(summary["task"] == task) & (summary["data"] == data)]
    scores = sorted(group_runs["score"].unique())
    cols = min(4, len(specs))
    rows = math.ceil(len(specs) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (metric, label, _) in zip(axes.flat, specs):
        stats = group[group["metric"] == metric].set_index("score").reindex(scores)
        mean = stats["mean"].to_numpy(dtype=float)
        low = stats["ci_low"].to_numpy(dtype=float) if "ci_low" in stats else np.full(len(scores), np.nan)
        high = stats["ci_high"].to_numpy(dtype=float) if "ci_high" in stats else np.full(len(scores), np.nan)
        std = stats["std"].fillna(0).to_numpy(dtype=float)
        below = np.where(np.isnan(low), std, mean - low)
        above = np.where(np.isnan(high), std, high - mean)
        ax.errorbar(range(len(scores)), mean, yerr=[below, above], fmt="o", markersize=4, capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(scores)), scores, rotation=60, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    fig.suptitle(f"{task} on {data}: mean and 95% bootstrap interval over seeds", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def difference_plot(task: str, data: str, runs: pd.DataFrame, reference: str, path: Path) -> Path | None:
    """A forest plot: each score's paired difference to ``reference`` on the task's primary
    metric with its 95% Student-t interval, a line at 0. None without the reference or with
    fewer than two scores."""
    from .stats import difference_ci, separated
    from .tables import baselines, by_seed

    group = runs[(runs["task"] == task) & (runs["data"] == data)]
    metric = primary_metric(task, group)
    if metric is None or reference not in set(group["score"]):
        return None
    marked = baselines(group)
    ref = by_seed(group[group["score"] == reference], metric)
    rows = []
    for score in sorted(set(group["score"]) - {reference}):
        delta, low, high = difference_ci(by_seed(group[group["score"] == score], metric), ref)
        if not math.isnan(delta):
            rows.append((delta, score + (" (baseline)" if score in marked else ""), low, high))
    if not rows:
        return None
    rows.sort()
    fig, ax = subplots(figsize=(6, 0.32 * len(rows) + 1.2))
    for i, (delta, label, low, high) in enumerate(rows):
        colour = "#4c72b0" if separated(low, high) else "#999999"
        if not math.isnan(low):
            ax.plot([low, high], [i, i], color=colour, linewidth=2)
        ax.plot([delta], [i], "o", color=colour, markersize=5)
    ax.axvline(0, color="#c44e52", linewidth=1)
    ax.set_yticks(range(len(rows)), [r[1] for r in rows], fontsize=8)
    ax.set_xlabel(f"Δ {metric[len('test/'):]} vs {reference} (paired, 95% t interval; grey: includes 0)", fontsize=8)
    ax.set_title(f"{task} on {data}: difference to {reference}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def validation_curves(task: str, data: str, runs: RunSet, path: Path) -> Path | None:
    """The validation value of the task's primary metric per epoch, one line per score
    (mean over seeds)."""
    group = runs.runs[(runs.runs["task"] == task) & (runs.runs["data"] == data)]
    metric = primary_metric(task, group)
    if metric is None:
        return None
    key = metric.replace("test/", "val/", 1)
    fig, ax = subplots(figsize=(6, 3.6))
    drawn = False
    for score in sorted(group["score"].unique()):
        curves = []
        for run_dir in group[group["score"] == score]["run_dir"]:
            history = runs.records[run_dir].get("history") or []
            curves.append({int(h["epoch"]): float(h[key]) for h in history if key in h and "epoch" in h})
        frame = pd.DataFrame(curves).mean(axis=0).sort_index() if curves else pd.Series(dtype=float)
        if len(frame):
            ax.plot(frame.index + 1, frame.values, marker="o", markersize=3, label=score)
            drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(key)
    ax.set_title(f"{task} on {data}: validation {key[4:]} per epoch", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def entropy_per_map(task: str, data: str, runs: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path | None:
    """Attention entropy of each glimpse (VQA) or attention stage (text-to-image) per score."""
    pattern = re.compile(r"^test/attn_entropy_(g\d+|\d+px)$")
    group = summary[(summary["task"] == task) & (summary["data"] == data) & summary["metric"].str.match(pattern)]
    if group.empty:
        return None
    maps = sorted(group["metric"].unique(), key=lambda m: (len(m), m))
    scores = sorted(group["score"].unique())
    width = 0.8 / len(maps)
    fig, ax = subplots(figsize=(max(6, 0.7 * len(scores)), 3.4))
    for i, metric in enumerate(maps):
        stats = group[group["metric"] == metric].set_index("score").reindex(scores)
        ax.bar(np.arange(len(scores)) + (i - (len(maps) - 1) / 2) * width, stats["mean"], width,
               yerr=stats["std"].fillna(0), capsize=2, label=metric[len("test/attn_entropy_"):])
    ax.set_xticks(range(len(scores)), scores, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("normalised entropy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{task} on {data}: attention entropy per map", fontsize=10)
    ax.legend(fontsize=7, title="map", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _save(fig, path)


def attention_heatmaps(task: str, data: str, runs: RunSet, path: Path, examples: int = 4) -> Path | None:
    """The same test examples' attention over the image for every score, side by side
    (lowest seed of each score; from the ``attention_examples.npz`` a run saves)."""
    group = runs.runs[(runs.runs["task"] == task) & (runs.runs["data"] == data)]
    loaded = {}
    for score in sorted(group["score"].unique()):
        run_dir = group[group["score"] == score].sort_values("seed")["run_dir"].iloc[0]
        file = Path(run_dir) / ATTENTION_FILE
        if file.is_file():
            try:
                with np.load(file, allow_pickle=False) as npz:
                    loaded[score] = {k: npz[k] for k in npz.files}
            except (OSError, ValueError):
                continue
    if not loaded:
        return None
    first = next(iter(loaded.values()))
    n = min(examples, len(first["image"]), *(len(v["image"]) for v in loaded.values()))
    scores = list(loaded)
    fig, axes = subplots(n, len(scores) + 1, figsize=(1.7 * (len(scores) + 1), 1.9 * n), squeeze=False)
    for i in range(n):
        image = first["image"][i].transpose(1, 2, 0)
        axes[i, 0].imshow(image)
        axes[i, 0].set_xlabel(textwrap.fill(str(first["text"][i]), 28), fontsize=6)
        top = max(max(float(loaded[s]["attention"][i].max()) for s in scores), 1e-8)  # one scale per example
        truth = first["truth"][i] if "truth" in first else None
        for j, score in enumerate(scores, start=1):
            heat = loaded[score]["attention"][i]
            axes[i, j].imshow(image)
            axes[i, j].imshow(heat, cmap="inferno", alpha=0.7, extent=(0, image.shape[1], image.shape[0], 0),
                              interpolation="nearest", vmin=0, vmax=top)
            if truth is not None and truth.any():  # what the question is about, outlined
                axes[i, j].contour(truth.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            if i == 0:
                axes[i, j].set_title(score, fontsize=7)
            if "prediction" in loaded[score]:
                axes[i, j].set_xlabel(f"answer: {loaded[score]['prediction'][i]}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    what = ("where the [words] are drawn (regions' attention over them, all stages, on the real image" if task == "t2i"
            else "attention mass per region (all maps")
    fig.suptitle(f"{task} on {data}: {what}; one colour scale per row; cyan: ground truth)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


METRIC_LABELS = {"caption_similarity": "evaluator image-caption cosine (× 100)"}


def deletion_curves(task: str, data: str, runs: RunSet, path: Path) -> Path | None:
    """The task metric as regions (text-to-image: words) are hidden in attention order, one
    line per score (mean over seeds), and in random order (dashed: mean over every run)."""
    group = runs.runs[(runs.runs["task"] == task) & (runs.runs["data"] == data)]
    fig, ax = subplots(figsize=(6, 3.8))
    randoms, fractions, drawn, metric, deleted = [], None, False, "accuracy", "regions"
    for score in sorted(group["score"].unique()):
        curves = []
        for run_dir in group[group["score"] == score]["run_dir"]:
            analysis = runs.records[run_dir].get("analysis") or {}
            if analysis.get("attention") and analysis.get("random"):
                fractions, metric = analysis["fractions"], analysis.get("metric", metric)
                deleted = analysis.get("deleted", deleted)
                curves.append(analysis["attention"])
                randoms.append(analysis["random"])
        if curves:
            ax.plot([100 * f for f in fractions], np.mean(curves, axis=0), marker="o", markersize=3, label=score)
            drawn = True
    if not drawn:
        return None
    ax.plot([100 * f for f in fractions], np.mean(randoms, axis=0), "k--", label="random order (all)")
    ax.set_xlabel(f"{deleted} hidden (%)")
    ax.set_ylabel(METRIC_LABELS.get(metric, f"{metric} (%)"))
    ax.set_title(f"{task} on {data}: deletion curves (attention order)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)
