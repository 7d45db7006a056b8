"""Comparison tables from collected runs: mean ± std over seeds, best marked, delta to a baseline.

Every table is a :class:`Table` of already formatted cells (plus which cells are the best
of their column), so the Markdown and HTML reports show exactly the same numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

BASELINE = "scaled_dot"
# per task: (metric, column label, +1 higher is better / -1 lower is better / 0 no direction)
TASK_METRICS: dict[str, list[tuple[str, str, int]]] = {
    "vqa": [("test/vqa_acc", "accuracy", 1), ("test/attn_entropy", "attn entropy", 0)],
    "retrieval": [("test/i2t_r1", "i2t R@1", 1), ("test/i2t_r5", "i2t R@5", 1), ("test/i2t_r10", "i2t R@10", 1),
                  ("test/t2i_r1", "t2i R@1", 1), ("test/t2i_r5", "t2i R@5", 1), ("test/t2i_r10", "t2i R@10", 1),
                  ("test/rsum", "rsum", 1), ("test/attn_entropy", "attn entropy", 0)],
    "t2i": [("test/r_precision", "R-precision", 1), ("test/attribute_acc", "attribute acc", 1),
            ("test/object_acc", "object acc", 1), ("test/fid_feat", "FID-feat*", -1),
            ("test/pixel_l1", "pixel L1", -1), ("test/attn_entropy", "attn entropy", 0)],
    "grounding": [("test/phrase_r1", "R@1", 1), ("test/phrase_r5", "R@5", 1), ("test/phrase_r10", "R@10", 1),
                  ("test/attn_entropy", "attn entropy", 0)],
}
# the metric of the Δ column and the cross-task ranking, the first a task's runs report
# (text-to-image: attribute accuracy where a detector reads the objects, else R-precision,
# which saturates on the synthetic scenes)
PRIMARY = {"vqa": ["test/vqa_acc"], "retrieval": ["test/rsum"], "t2i": ["test/attribute_acc", "test/r_precision"],
           "grounding": ["test/phrase_r1"]}
INFO = [("params", "params", 0), ("train_seconds", "train s", 0)]


@dataclass
class Table:
    """A titled table of formatted cells; ``best[(row, col)]`` marks the best cells."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    best: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""


def task_groups(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (task, data) comparisons in ``runs``: VQA, retrieval, text-to-image, then others."""
    order = {task: i for i, task in enumerate(TASK_METRICS)}
    pairs = {(t, d) for t, d in zip(runs.get("task", []), runs.get("data", []))}
    return sorted(pairs, key=lambda g: (order.get(g[0], len(order)), g))


def task_metrics(task: str, runs: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The metric columns shown for ``task``: its known metrics present in ``runs``, VQA's
    per-answer-type accuracies, and for an unknown task every ``test/`` metric."""
    known = TASK_METRICS.get(task)
    present = [c for c in runs.columns if c.startswith("test/") and runs[c].notna().any()]
    if known is None:
        return [(c, c[len("test/"):], 0) for c in present]
    specs = [s for s in known if s[0] in present]
    if task == "vqa":
        types = [(c, c[len("test/vqa_acc/"):], 1) for c in present if c.startswith("test/vqa_acc/")]
        specs = specs[:1] + types + specs[1:]
    return specs


def primary_metric(task: str, runs: pd.DataFrame) -> str | None:
    specs = task_metrics(task, runs)
    present = {s[0] for s in specs}
    for wanted in PRIMARY.get(task, []):
        if wanted in present:
            return wanted
    return specs[0][0] if specs else None


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Long summary: one row per (task, data, score, metric) with ``n``, ``mean``, ``std``
    (sample std over seeds; NaN for one seed). Metrics are the ``test/`` columns and the
    info columns ``params``, ``score_params``, ``train_seconds``."""
    value_cols = [c for c in runs.columns if c.startswith("test/")] + ["params", "score_params", "train_seconds",
                                                                       "analysis_seconds"]
    long = runs.melt(id_vars=["task", "data", "score", "seed"], value_vars=value_cols, var_name="metric")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value"])
    grouped = long.groupby(["task", "data", "score", "metric"], sort=True)["value"]
    out = pd.DataFrame({"n": grouped.count(), "mean": grouped.mean(), "std": grouped.std(ddof=1)}).reset_index()
    return out.sort_values(["task", "data", "score", "metric"], kind="stable").reset_index(drop=True)


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return fmt(mean, digits) if std is None or math.isnan(std) else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def _stat(summary: pd.DataFrame, score: str, metric: str) -> tuple[float, float, int]:
    hit = summary[(summary["score"] == score) & (summary["metric"] == metric)]
    if hit.empty:
        return float("nan"), float("nan"), 0
    row = hit.iloc[0]
    return float(row["mean"]), float(row["std"]), int(row["n"])


def baselines(runs: pd.DataFrame) -> set[str]:
    """The rows of ``runs`` that are baselines (e.g. VQA's question-only model), not scores."""
    if "baseline" not in runs.columns:
        return set()
    return set(runs.loc[runs["baseline"].fillna(False).astype(bool), "score"])


def ordered_scores(group_runs: pd.DataFrame) -> list[str]:
    """The scores of a comparison in name order, its baselines last."""
    marked = baselines(group_runs)
    return sorted(group_runs["score"].unique(), key=lambda s: (s in marked, s))


def _metric_rows(group_runs: pd.DataFrame, group: pd.DataFrame, scores: list[str],
                 specs: list[tuple[str, str, int]]) -> tuple[list[list[str]], set[tuple[int, int]]]:
    """Rows ``[score, seeds, metric cells…]`` and the best cells among the scores (per
    column, by direction; none when all are equal; a baseline is never marked best and its
    label says ``(baseline)``)."""
    marked = baselines(group_runs)
    means = {m: [_stat(group, s, m)[0] for s in scores if s not in marked] for m, _, _ in specs}
    rows, best = [], set()
    for i, score in enumerate(scores):
        label = f"{score} (baseline)" if score in marked else score
        row = [label, str(int((group_runs["score"] == score).sum()))]
        for j, (metric, _, direction) in enumerate(specs):
            mean, std, _ = _stat(group, score, metric)
            row.append(fmt_mean_std(mean, std))
            column = [v for v in means[metric] if not math.isnan(v)]
            if (direction and score not in marked and len(set(column)) > 1 and not math.isnan(mean)
                    and mean == (max(column) if direction > 0 else min(column))):
                best.add((i, 2 + j))
        rows.append(row)
    return rows, best


INTERPRETABILITY = [("test/pointing_acc", "pointing acc", 1), ("test/pointing_chance", "pointing chance", 0),
                    ("test/attn_mass_gt", "mass on truth", 1), ("test/attn_mass_chance", "mass chance", 0),
                    ("test/aopc_gain", "AOPC gain", 1), ("test/flip_rate", "flip rate", 1),
                    ("test/tau_ig", "τ IG", 1), ("test/tau_loo", "τ LOO", 1)]


INTERPRETABILITY_NOTES = {
    "vqa": ("Pointing acc: the most-attended region touches what the question is about (chance: a random region); "
            "mass on truth: attention mass on those pixels (chance: uniform attention); AOPC gain: accuracy drop "
            "when hiding regions in attention order minus in random order, averaged over 10–90% hidden; flip "
            "rate: answers that change when the single most-attended region is hidden; τ: Kendall rank "
            "correlation of attention with integrated-gradients and leave-one-out importance; analysis s: the analysis' cost "
            "per run. Percent except τ."),
    "retrieval": ("Each caption's attention on its own image. Pointing acc: the most-attended region touches what "
                  "the caption mentions (chance: a random region); mass on truth: attention mass there (chance: "
                  "uniform attention); AOPC gain: drop of text-to-image R@1 when the caption's own image loses "
                  "regions in attention order minus in random order, averaged over 10–90% hidden; flip rate: "
                  "captions whose top-1 image changes when the single most-attended region is hidden; τ: Kendall "
                  "rank correlation of attention with integrated-gradients and leave-one-out importance for the "
                  "caption-image similarity; analysis s: the analysis' cost per run. Percent except τ."),
    "t2i": ("Each generated region attends over the caption's words. Pointing acc: the cell where a described "
            "object's colour and shape words are drawn most touches its box in the real render (chance: a random "
            "cell; all stages pooled onto the coarsest grid; pointing <res>px: one stage on its own grid); mass on truth: those words' attention mass in the box (chance: the box's area share); AOPC "
            "gain: drop of the evaluator's image-caption similarity (cosine × 100) when hiding words from the "
            "attention in attention order minus in random order, averaged over 10–90% of the words hidden; flip "
            "rate: images whose evaluator top-1 caption changes when the single most-attended word is hidden; τ: "
            "Kendall rank correlation of word attention with integrated-gradients and leave-one-out importance; "
            "analysis s: the analysis' cost per run. Percent except τ and AOPC gain."),
    "grounding": ("A phrase's attention over the regions is its localisation, so pointing is the task's R@1 and the "
                  "deletion, flip and τ measures of the other tasks would restate it; they are not computed. Mass on "
                  "truth: the phrase's attention mass on the regions over the IoU threshold with one of its boxes "
                  "(chance: uniform attention over the regions); analysis s: the analysis' cost per run. Percent."),
}


def interpretability_table(task: str, data: str, runs: pd.DataFrame, summary: pd.DataFrame) -> Table | None:
    """Grounding and faithfulness per score (mean ± std over seeds), or None without them."""
    group_runs = runs[(runs["task"] == task) & (runs["data"] == data)]
    present = [c for c in group_runs.columns if group_runs[c].notna().any()]
    specs = [s for s in INTERPRETABILITY if s[0] in present]
    if not specs:
        return None
    # per attention stage (text-to-image): pointing on each stage's own grid, after the overall one
    stages = sorted({int(m.group(1)) for c in present if (m := re.fullmatch(r"test/pointing_acc_(\d+)px", c))})
    per_stage = [(f"test/{k}_{res}px", f"{label} {res}px", d) for res in stages
                 for k, label, d in (("pointing_acc", "pointing", 1), ("pointing_chance", "chance", 0))
                 if f"test/{k}_{res}px" in present]
    at = next((i + 1 for i, s in enumerate(specs) if s[0] == "test/pointing_chance"), 0)
    specs = specs[:at] + per_stage + specs[at:]
    group = summary[(summary["task"] == task) & (summary["data"] == data)]
    scores = [s for s in ordered_scores(group_runs) if s not in baselines(group_runs)]  # baselines have no attention
    rows, best = _metric_rows(group_runs, group, scores, specs)
    for score, row in zip(scores, rows):
        row.append(fmt(_stat(group, score, "analysis_seconds")[0], 0))
    note = INTERPRETABILITY_NOTES.get(task, INTERPRETABILITY_NOTES["vqa"])
    columns = ["score", "seeds"] + [lab for _, lab, _ in specs] + ["analysis s"]
    return Table(f"Interpretability: {task} on {data}", columns, rows, best, note)


def most_and_least(task: str, data: str, summary: pd.DataFrame, metric: str) -> tuple[str, str] | None:
    """The scores with the highest and lowest mean ``metric`` in a comparison."""
    stats = summary[(summary["task"] == task) & (summary["data"] == data) & (summary["metric"] == metric)]
    if len(stats) < 2:
        return None
    ordered = stats.sort_values(["mean", "score"], ascending=[False, True])
    return str(ordered.iloc[0]["score"]), str(ordered.iloc[-1]["score"])


def task_table(task: str, data: str, runs: pd.DataFrame, summary: pd.DataFrame) -> Table:
    """One row per score: each metric as mean ± std over seeds (best per column marked),
    the number of seeds, a delta of the primary metric to ``scaled_dot``, params, train time."""
    group_runs = runs[(runs["task"] == task) & (runs["data"] == data)]
    group = summary[(summary["task"] == task) & (summary["data"] == data)]
    specs = task_metrics(task, group_runs)
    primary = primary_metric(task, group_runs)
    scores = ordered_scores(group_runs)
    has_baseline = BASELINE in scores and primary is not None
    columns = ["score", "seeds"] + [label for _, label, _ in specs]
    if has_baseline:
        columns.append(f"Δ {dict((m, lab) for m, lab, _ in specs)[primary]} vs {BASELINE}")
    columns += [label for _, label, _ in INFO]
    rows, best = _metric_rows(group_runs, group, scores, specs)
    for i, (score, row) in enumerate(zip(scores, rows)):
        if has_baseline:
            delta = _stat(group, score, primary)[0] - _stat(group, BASELINE, primary)[0]
            row.append("–" if score == BASELINE else f"{delta:+.2f}")
        row.append(fmt(_stat(group, score, "params")[0], 0))
        row.append(fmt(_stat(group, score, "train_seconds")[0], 0))
    note = "Mean ± sample std over seeds (no std for one seed); best per column in bold (unless all are equal)."
    if baselines(group_runs):
        note += (" (baseline): a model without the attention under study (VQA: question-only, it never sees the "
                 "image), never marked best.")
    if task == "t2i":
        note += " *FID-feat is a Fréchet distance on the matching evaluator's features, not comparable with published Inception FID."
    return Table(f"{task} on {data}", columns, rows, best, note)


def ranking_table(runs: pd.DataFrame, summary: pd.DataFrame) -> Table:
    """Mean rank of each score over the (task, data) comparisons, by each one's primary
    metric (rank 1 = best; ties share the lower rank)."""
    ranks: dict[str, dict[str, float]] = {}
    groups = task_groups(runs)
    labels = []
    for task, data in groups:
        group_runs = runs[(runs["task"] == task) & (runs["data"] == data)]
        metric = primary_metric(task, group_runs)
        if metric is None:
            continue
        label = f"{task}/{data}"
        labels.append(label)
        stats = summary[(summary["task"] == task) & (summary["data"] == data) & (summary["metric"] == metric)]
        stats = stats[~stats["score"].isin(baselines(group_runs))]  # baselines are not ranked
        series = stats.set_index("score")["mean"]
        for score, rank in series.rank(ascending=False, method="min").items():
            ranks.setdefault(score, {})[label] = float(rank)
    order = sorted(ranks, key=lambda s: (sum(ranks[s].values()) / len(ranks[s]), s))
    rows = []
    for score in order:
        mean_rank = sum(ranks[score].values()) / len(ranks[score])
        rows.append([score, fmt(mean_rank, 2), str(len(ranks[score]))] + [fmt(ranks[score].get(lab, float("nan")), 0)
                                                                          for lab in labels])
    best = {(0, 1)} if rows and (len(rows) == 1 or rows[0][1] != rows[1][1]) else set()  # a unique best only
    return Table("Cross-task ranking", ["score", "mean rank", "comparisons"] + labels, rows, best,
                 "Rank of each score by the primary metric of each comparison (VQA accuracy, retrieval rsum, "
                 "text-to-image attribute accuracy where a detector reads the objects, else R-precision, phrase "
                 "grounding R@1), 1 = best; "
                 "mean over the comparisons the score took part in; baselines are not ranked.")
