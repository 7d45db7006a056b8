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


def metric_direction(task: str, metric: str) -> int:
    """+1 when a higher ``metric`` is better for ``task``, -1 when lower is, 0 when neither
    (entropy, chance levels, costs) or unknown."""
    if metric.startswith("test/vqa_acc/"):
        return 1
    for name, _, direction in TASK_METRICS.get(task, []) + INTERPRETABILITY:
        if name == metric:
            return direction
    return 0


def by_seed(runs: pd.DataFrame, metric: str) -> dict[int, float]:
    """``metric`` of ``runs`` (one score's) per seed (the mean if a seed ran twice), NaN left out."""
    if metric not in runs.columns:
        return {}
    values = pd.to_numeric(runs[metric], errors="coerce")
    per_seed = values.groupby(runs["seed"]).mean().dropna()
    return {int(seed): float(v) for seed, v in per_seed.items()}


def aggregate(runs: pd.DataFrame, reference: str = BASELINE) -> pd.DataFrame:
    """Long summary: one row per (task, data, score, metric) with ``n``, ``mean``, ``std``
    (sample std over seeds; NaN for one seed), ``ci_low``/``ci_high`` (95% bootstrap interval of
    the mean over seeds, :func:`~alignbench.results.stats.mean_ci`; NaN for one seed) and
    ``p_better_than_ref`` (probability that the score does better than ``reference`` on a
    seed, :func:`~alignbench.results.stats.probability_of_improvement`; NaN for metrics with
    no better direction, the reference itself or a comparison without it). Metrics are the
    ``test/`` columns and the info columns ``params``, ``score_params``, ``train_seconds``,
    ``analysis_seconds``."""
    from .stats import mean_ci, probability_of_improvement

    value_cols = [c for c in runs.columns if c.startswith("test/")] + ["params", "score_params", "train_seconds",
                                                                       "analysis_seconds"]
    value_cols = [c for c in value_cols if c in runs.columns]
    long = runs.melt(id_vars=["task", "data", "score", "seed"], value_vars=value_cols, var_name="metric")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value"])
    rows = []
    for (task, data, metric), part in long.groupby(["task", "data", "metric"], sort=True):
        per_score = {score: {int(k): float(v) for k, v in values.groupby(values.index).mean().items()}
                     for score, values in ((sc, g.set_index("seed")["value"]) for sc, g in part.groupby("score"))}
        direction = metric_direction(task, metric)
        for score, values in sorted(per_score.items()):
            raw = part.loc[part["score"] == score, "value"]
            low, high = mean_ci(list(values.values()))
            better = (probability_of_improvement(values, per_score[reference], direction)
                      if reference in per_score and score != reference else float("nan"))
            rows.append({"task": task, "data": data, "score": score, "metric": metric, "n": int(raw.count()),
                         "mean": float(raw.mean()), "std": float(raw.std(ddof=1)) if raw.count() > 1 else float("nan"),
                         "ci_low": low, "ci_high": high, "p_better_than_ref": better})
    columns = ["task", "data", "score", "metric", "n", "mean", "std", "ci_low", "ci_high", "p_better_than_ref"]
    out = pd.DataFrame(rows, columns=columns)
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


def top_two(group_runs: pd.DataFrame, group: pd.DataFrame, scores: list[str], metric: str,
            direction: int) -> tuple[str | None, str | None, tuple[float, float, float]]:
    """The best and the runner-up score by mean ``metric`` (by ``direction``; baselines left
    out) and the paired difference best − runner-up with its 95% interval."""
    from .stats import difference_ci

    marked = baselines(group_runs)
    means = [(_stat(group, s, metric)[0], s) for s in scores if s not in marked]
    means = sorted(((m, s) for m, s in means if not math.isnan(m)), key=lambda t: (-direction * t[0], t[1]))
    if len(means) < 2 or not direction:
        return (means[0][1] if means else None), None, (math.nan, math.nan, math.nan)
    best, runner = means[0][1], means[1][1]
    diff = difference_ci(by_seed(group_runs[group_runs["score"] == best], metric),
                         by_seed(group_runs[group_runs["score"] == runner], metric))
    return best, runner, diff


def _metric_rows(group_runs: pd.DataFrame, group: pd.DataFrame, scores: list[str],
                 specs: list[tuple[str, str, int]]) -> tuple[list[list[str]], set[tuple[int, int]], list[str]]:
    """Rows ``[score, seeds, metric cells…]``, the best cells among the scores and the labels
    of the columns whose top scores are indistinguishable. A column's best is marked only when
    it is separated from the runner-up: the 95% interval of their (paired) difference excludes
    0. A baseline is never marked best and its label says ``(baseline)``."""
    from .stats import separated

    marked = baselines(group_runs)
    rows, best, tied = [], set(), []
    for score in scores:
        label = f"{score} (baseline)" if score in marked else score
        row = [label, str(int((group_runs["score"] == score).sum()))]
        for metric, _, _ in specs:
            mean, std, _ = _stat(group, score, metric)
            row.append(fmt_mean_std(mean, std))
        rows.append(row)
    for j, (metric, label, direction) in enumerate(specs):
        if not direction:
            continue
        top, runner, (_, low, high) = top_two(group_runs, group, scores, metric, direction)
        if top is None or runner is None:
            continue
        if _stat(group, top, metric)[0] == _stat(group, runner, metric)[0]:
            continue  # all equal at the top: nothing to mark
        if separated(low, high):
            best.add((scores.index(top), 2 + j))
        else:
            tied.append(label)
    return rows, best, tied


INTERPRETABILITY = [("test/pointing_acc", "pointing acc", 1), ("test/pointing_chance", "pointing chance", 0),
                    ("test/attn_mass_gt", "mass on truth", 1), ("test/attn_mass_chance", "mass chance", 0),
                    ("test/aopc_gain", "AOPC gain", 1), ("test/flip_rate", "flip rate", 1),
                    ("test/tau_ig", "τ IG", 1), ("test/tau_loo", "τ LOO", 1)]


CHANCE_OF = {"test/pointing_chance": "test/pointing_acc", "test/attn_mass_chance": "test/attn_mass_gt"}

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
    # a chance rate is shown beside its measure only
    specs = [s for s in INTERPRETABILITY if s[0] in present and CHANCE_OF.get(s[0], s[0]) in present]
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
    rows, best, _ = _metric_rows(group_runs, group, scores, specs)
    for score, row in zip(scores, rows):
        row.append(fmt(_stat(group, score, "analysis_seconds")[0], 0))
    note = INTERPRETABILITY_NOTES.get(task, INTERPRETABILITY_NOTES["vqa"]) + " " + BOLD_RULE
    columns = ["score", "seeds"] + [lab for _, lab, _ in specs] + ["analysis s"]
    return Table(f"Interpretability: {task} on {data}", columns, rows, best, note)


def most_and_least(task: str, data: str, summary: pd.DataFrame, metric: str) -> tuple[str, str] | None:
    """The scores with the highest and lowest mean ``metric`` in a comparison."""
    stats = summary[(summary["task"] == task) & (summary["data"] == data) & (summary["metric"] == metric)]
    if len(stats) < 2:
        return None
    ordered = stats.sort_values(["mean", "score"], ascending=[False, True])
    return str(ordered.iloc[0]["score"]), str(ordered.iloc[-1]["score"])


BOLD_RULE = ("Bold: a column's best, only where the 95% t interval of its paired per-seed difference to "
             "the runner-up excludes 0.")


def _interval(low: float, high: float, digits: int = 2) -> str:
    return "–" if math.isnan(low) or math.isnan(high) else f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def task_table(task: str, data: str, runs: pd.DataFrame, summary: pd.DataFrame, reference: str = BASELINE) -> Table:
    """One row per score: each metric as mean ± std over seeds (a column's best marked where it
    is separated from the runner-up), the number of seeds, and for the primary metric the 95%
    interval of the mean, the paired difference to ``reference`` with its 95% interval and the
    probability of doing better than it on a seed; params, train time."""
    from .stats import difference_ci

    group_runs = runs[(runs["task"] == task) & (runs["data"] == data)]
    group = summary[(summary["task"] == task) & (summary["data"] == data)]
    specs = task_metrics(task, group_runs)
    primary = primary_metric(task, group_runs)
    scores = ordered_scores(group_runs)
    labels = dict((m, lab) for m, lab, _ in specs)
    columns = ["score", "seeds"] + [label for _, label, _ in specs]
    has_reference = reference in scores and primary is not None
    if primary is not None:
        columns.append(f"{labels[primary]} 95% CI")
    if has_reference:
        columns += [f"Δ {labels[primary]} vs {reference} [95% CI]", f"P(> {reference})"]
    columns += [label for _, label, _ in INFO]
    rows, best, tied = _metric_rows(group_runs, group, scores, specs)
    reference_values = by_seed(group_runs[group_runs["score"] == reference], primary) if has_reference else {}
    for score, row in zip(scores, rows):
        if primary is not None:
            hit = group[(group["score"] == score) & (group["metric"] == primary)]
            row.append(_interval(*(hit[["ci_low", "ci_high"]].iloc[0] if len(hit) else (math.nan, math.nan))))
        if has_reference:
            if score == reference:
                row += ["–", "–"]
            else:
                delta, low, high = difference_ci(by_seed(group_runs[group_runs["score"] == score], primary),
                                                 reference_values)
                interval = _interval(low, high)
                row.append(f"{delta:+.2f}" + ("" if interval == "–" else f" {interval}"))
                p = group[(group["score"] == score) & (group["metric"] == primary)]["p_better_than_ref"]
                row.append(fmt(float(p.iloc[0]) if len(p) else math.nan, 2))
        row.append(fmt(_stat(group, score, "params")[0], 0))
        row.append(fmt(_stat(group, score, "train_seconds")[0], 0))
    note = ("Mean ± sample std over seeds (no std for one seed). 95% CI: percentile bootstrap of the mean over "
            "seeds. " + BOLD_RULE)
    if has_reference:
        note += (f" Δ: mean per-seed difference to {reference} (paired, on the seeds both have) with its 95% Student-t interval; "
                 f"P(> {reference}): probability that a run of the score does better than a run of {reference} "
                 "(Mann–Whitney statistic over the pairs of runs, as rliable).")
    if primary is not None and labels[primary] in tied:
        top, runner, (_, low, high) = top_two(group_runs, group, scores, primary, 1)
        note += (f" The top scores on {labels[primary]} are indistinguishable: {top} − {runner} = "
                 f"{_interval(low, high)} includes 0" if not math.isnan(low) else
                 f" The top scores on {labels[primary]} are indistinguishable with one seed")
        note += "."
    if baselines(group_runs):
        note += (" (baseline): a model without the attention under study (VQA: question-only, it never sees the "
                 "image), never marked best.")
    if task == "t2i":
        note += " *FID-feat is a Fréchet distance on the matching evaluator's features, not comparable with published Inception FID."
    return Table(f"{task} on {data}", columns, rows, best, note)


def ranking_table(runs: pd.DataFrame, summary: pd.DataFrame) -> Table:
    """Mean rank of each score over the (task, data) comparisons, by each one's primary
    metric (rank 1 = best; ties share the lower rank), and the probability that the score
    ranks first when every comparison's seeds are resampled
    (:func:`~alignbench.results.stats.rank_first_probability`)."""
    from .stats import rank_first_probability

    ranks: dict[str, dict[str, float]] = {}
    comparisons: dict[str, dict[str, dict[int, float]]] = {}
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
        comparisons[label] = {score: by_seed(group_runs[group_runs["score"] == score], metric) for score in series.index}
    first = rank_first_probability(comparisons)
    order = sorted(ranks, key=lambda s: (sum(ranks[s].values()) / len(ranks[s]), s))
    rows = []
    for score in order:
        mean_rank = sum(ranks[score].values()) / len(ranks[score])
        rows.append([score, fmt(mean_rank, 2), fmt(first.get(score, math.nan), 2), str(len(ranks[score]))]
                    + [fmt(ranks[score].get(lab, float("nan")), 0) for lab in labels])
    best = {(0, 1)} if rows and (len(rows) == 1 or rows[0][1] != rows[1][1]) else set()  # a unique best only
    return Table("Cross-task ranking", ["score", "mean rank", "P(rank 1)", "comparisons"] + labels, rows, best,
                 "Rank of each score by the primary metric of each comparison (VQA accuracy, retrieval rsum, "
                 "text-to-image attribute accuracy where a detector reads the objects, else R-precision, phrase "
                 "grounding R@1), 1 = best; "
                 "mean over the comparisons the score took part in; baselines are not ranked. P(rank 1): how often "
                 "the score has the best mean rank when each comparison's seeds are resampled with replacement "
                 "(the same seeds for every score; ties share first place); with one seed per score it is 1 for "
                 "the best mean rank.")
