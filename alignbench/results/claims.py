"""Published claims about attention, tested on the runs a report reads.

Each claim is tested per comparison (task, data) that holds the scores it needs and gets a
verdict — ``reproduced``, ``refuted`` or ``undecided`` — with the numbers behind it: means
over seeds and 95% Student-t intervals of the per-seed differences, paired on the seeds both
scores have (:func:`alignbench.results.stats.difference_ci`). A difference "holds" when its
interval lies above 0 and "fails" when it lies below; an interval that includes 0 decides
nothing. Where a claim tests a family of differences at once, Holm's correction over the
family decides. With one seed there is no interval, so every verdict is ``undecided``.

- **BAN, Table 2** (Kim et al. 2018): bilinear attention > co-attention ≥ uni-attention. Here
  ``ban`` against ``coattention`` (Lu et al.'s parallel co-attention), and ``coattention``
  against every uni-attention score (the row-normalised scores other than the ``uniform``
  control). "≥" is tested as non-inferiority with a margin (:data:`MARGIN`: 1 point of an
  accuracy or recall, 6 of retrieval's rsum, a sum of six recalls): co-attention is not worse
  than a uni-attention score by more than the margin. Reproduced when ``ban − coattention``
  holds and co-attention is shown non-inferior to every uni-attention score (each one-sided
  test at 2.5%, one side of the 95% interval: the claim needs all of them, so no correction);
  refuted when ``ban − coattention`` fails or co-attention is shown worse than some
  uni-attention score by more than the margin (one-sided tests with Holm's correction over
  them); undecided otherwise. Failing to show co-attention below a score is not evidence that
  it is not: without the margin, few seeds would "reproduce" "≥" by having too little data.
  A metric without a declared margin leaves "≥" untested (at best undecided).
  (Testing against the best uni-attention score alone, picked by its mean on the same runs,
  would be biased; the evidence still shows that difference.)
- **BAN, Fig. 2d**: a multi-glimpse BAN settles at distinct attention entropies per glimpse.
  Reproduced when the difference of every pair of glimpses' entropies holds or fails (is not
  0); refuted when every interval lies within ±2 entropy points (the glimpses are alike).
- **Jain & Wallace 2019**: attention agrees only weakly with gradient and leave-one-out
  importance. Per score, Kendall τ with integrated gradients and with leave-one-out (the t
  interval of its mean over seeds); reproduced when every interval lies below 0.5, refuted
  when some mean lies above 0.5 by one-sided t tests (at 2.5%) with Holm's correction over
  all the scores and both measures (one interval of many above 0.5 by chance refutes
  nothing). "Every interval below" needs each of them, so it takes no correction.
- **Wiegreffe & Pinter 2019**: learned attention beats uniform attention. Each score's
  difference to ``uniform`` on the primary metric, by paired t tests with Holm's correction
  over the scores; reproduced when some score is above, refuted when every score is below,
  undecided otherwise (the counts are given).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from importlib import import_module

import pandas as pd

from .stats import CONFIDENCE, difference_ci, difference_pvalue, holm
from .tables import Table, baselines, by_seed, fmt, primary_metric, task_groups

WEAK_TAU = 0.5  # Kendall τ below this is weak agreement
# one-sided tests at the level of one side of a 95% interval, so a family of one decides as the interval does
ONE_SIDED_ALPHA = (1 - CONFIDENCE) / 2
ALIKE_ENTROPY = 2.0  # entropy points within which two glimpses count as alike
CONTROL = "uniform"
# non-inferiority margin of "co-attention ≥ uni-attention", in the primary metric's units: a
# point of an accuracy or a recall; retrieval's rsum adds six recalls, so six points
MARGIN = {"test/vqa_acc": 1.0, "test/attribute_acc": 1.0, "test/r_precision": 1.0, "test/phrase_r1": 1.0,
          "test/rsum": 6.0}


@dataclass
class Verdict:
    claim: str
    comparison: str
    verdict: str  # reproduced | refuted | undecided
    evidence: str


def _interval(low: float, high: float) -> str:
    return "no interval" if math.isnan(low) else f"[{fmt(low)}, {fmt(high)}]"


def _holds(low: float, high: float) -> int:
    """+1 when an interval lies above 0, -1 below, 0 when it includes 0 or is missing."""
    if math.isnan(low) or math.isnan(high):
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0


def _normalization(target: str) -> str | None:
    module, _, name = target.rpartition(".")
    try:
        return getattr(getattr(import_module(module), name), "normalization", None)
    except (ImportError, AttributeError, ValueError):
        return None


def uni_attention_scores(group: pd.DataFrame, records: dict[str, dict]) -> list[str]:
    """The scores of a comparison whose attention is one softmax per query (row-normalised),
    without the ``uniform`` control and baselines."""
    marked = baselines(group)
    found = set()
    for score, run_dir in zip(group["score"], group["run_dir"]):
        target = ((records.get(run_dir) or {}).get("config") or {}).get("score", {}).get("_target_", "")
        if score not in marked and score != CONTROL and _normalization(str(target)) == "row":
            found.add(score)
    return sorted(found)


def _per_seed(group: pd.DataFrame, score: str, metric: str) -> dict[int, float]:
    return by_seed(group[group["score"] == score], metric)


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


def _seeds(group: pd.DataFrame) -> int:
    return int(group.groupby("score")["seed"].nunique().min()) if len(group) else 0


def ban_table2(name: str, group: pd.DataFrame, records: dict[str, dict]) -> Verdict | None:
    scores = set(group["score"])
    metric = primary_metric(str(group["task"].iloc[0]), group)
    uni = uni_attention_scores(group, records)
    if not {"ban", "coattention"} <= scores or not uni or metric is None:
        return None
    per = {s: _per_seed(group, s, metric) for s in ("ban", "coattention", *uni)}
    ban, co = per["ban"], per["coattention"]
    best_uni = max(uni, key=lambda s: (_mean(per[s]), s))
    d1, l1, h1 = difference_ci(ban, co)
    d2, l2, h2 = difference_ci(co, per[best_uni])
    first = _holds(l1, h1)
    margin = MARGIN.get(metric)
    noninferior, worse, tested = [], [], 0
    if margin is not None:
        # shifted by the margin: co − s > −margin (non-inferior) and co − s < −margin (worse)
        shifted = {s: {seed: v - margin for seed, v in per[s].items()} for s in uni}
        # non-inferior to every score: the claim needs each, so each test at 2.5% on its own
        pvalues = [difference_pvalue(co, shifted[s], alternative="greater") for s in uni]
        noninferior = [s for s, p in zip(uni, pvalues) if p <= ONE_SIDED_ALPHA]
        # worse than some score: any one would refute, so one family under Holm
        pvalues = [difference_pvalue(co, shifted[s], alternative="less") for s in uni]
        worse = [s for s, hit in zip(uni, holm(pvalues, ONE_SIDED_ALPHA)) if hit]
        tested = sum(not math.isnan(p) for p in pvalues)
    label = metric[len("test/"):]
    evidence = (f"{label}: ban {fmt(_mean(ban))}, coattention {fmt(_mean(co))}, best uni-attention {best_uni} "
                f"{fmt(_mean(per[best_uni]))}; ban − coattention {d1:+.2f} {_interval(l1, h1)}; coattention − "
                f"{best_uni} {d2:+.2f} {_interval(l2, h2)}; ")
    if margin is None:
        evidence += f"no non-inferiority margin is declared for {label}, so \"≥\" is not tested"
    else:
        evidence += (f"margin {fmt(margin)}: coattention non-inferior to {len(noninferior)} of {len(uni)} "
                     f"uni-attention scores (one-sided t tests at 2.5% each), worse by more than the margin than "
                     f"{len(worse)} of {tested} (one-sided, Holm over the {tested})"
                     + (f": {', '.join(worse)}" if worse else ""))
    if _seeds(group) < 2:
        verdict = "undecided"
    elif first < 0 or worse:
        verdict = "refuted"
    elif first > 0 and len(noninferior) == len(uni):  # uni is never empty here; no margin: none shown
        verdict = "reproduced"
    else:
        verdict = "undecided"
    return Verdict("BAN Table 2: bilinear > co-attention ≥ uni-attention", name, verdict, evidence)


def ban_glimpses(name: str, group: pd.DataFrame, records: dict[str, dict]) -> Verdict | None:
    if "ban" not in set(group["score"]):
        return None
    glimpses = sorted(c for c in group.columns if re.fullmatch(r"test/attn_entropy_g\d+", c)
                      and group.loc[group["score"] == "ban", c].notna().any())
    if len(glimpses) < 2:
        return None
    per = {g: _per_seed(group, "ban", g) for g in glimpses}
    parts, decided, alike = [], [], []
    for a, b in itertools.combinations(glimpses, 2):
        d, low, high = difference_ci(per[a], per[b])
        decided.append(_holds(low, high) != 0)
        alike.append(not math.isnan(low) and -ALIKE_ENTROPY < low and high < ALIKE_ENTROPY)
        parts.append(f"{a[len('test/attn_entropy_'):]} − {b[len('test/attn_entropy_'):]} {d:+.2f} {_interval(low, high)}")
    levels = ", ".join(f"{g[len('test/attn_entropy_'):]} {fmt(_mean(per[g]))}" for g in glimpses)
    verdict = ("undecided" if _seeds(group) < 2 else "reproduced" if all(decided)
               else "refuted" if all(alike) else "undecided")
    return Verdict("BAN Fig. 2d: glimpses settle at distinct entropies", name, verdict,
                   f"ban's normalised attention entropy per glimpse: {levels}; " + "; ".join(parts))


def jain_wallace(name: str, group: pd.DataFrame, records: dict[str, dict]) -> Verdict | None:
    columns = [c for c in ("test/tau_ig", "test/tau_loo") if c in group.columns and group[c].notna().any()]
    if not columns:
        return None
    marked = baselines(group)
    scores = sorted(s for s in set(group["score"]) if s not in marked and s != CONTROL)
    below, parts, tests, labels = True, [], [], []  # tests: one-sided p of mean τ > 0.5 per score and measure
    for column in columns:
        cells = []
        for score in scores:
            values = _per_seed(group, score, column)
            if not values:
                continue
            weak = {seed: WEAK_TAU for seed in values}
            _, low, high = difference_ci(values, {seed: 0.0 for seed in values})  # t interval of the mean
            below &= not math.isnan(high) and high < WEAK_TAU
            tests.append(difference_pvalue(values, weak, alternative="greater"))
            labels.append(f"{score} {column[len('test/'):]} {_interval(low, high)}")
            cells.append((_mean(values), score, low, high))
        if cells:
            top = max(cells)
            parts.append(f"{column[len('test/'):]}: {fmt(min(cells)[0])} to {fmt(top[0])} over {len(cells)} scores "
                         f"(highest {top[1]} {_interval(top[2], top[3])})")
    if not parts:
        return None
    shown = [label for label, hit in zip(labels, holm(tests, ONE_SIDED_ALPHA)) if hit]
    tested = sum(not math.isnan(p) for p in tests)
    parts.append(f"above {WEAK_TAU}: {len(shown)} of {tested} (one-sided t tests, Holm over the {tested})"
                 + (f": {', '.join(shown)}" if shown else ""))
    verdict = ("undecided" if _seeds(group) < 2 else "refuted" if shown else "reproduced" if below
               else "undecided")
    return Verdict(f"Jain & Wallace 2019: attention agrees weakly (τ < {WEAK_TAU}) with gradient and LOO importance",
                   name, verdict, "; ".join(parts))


def wiegreffe_pinter(name: str, group: pd.DataFrame, records: dict[str, dict]) -> Verdict | None:
    metric = primary_metric(str(group["task"].iloc[0]), group)
    if CONTROL not in set(group["score"]) or metric is None:
        return None
    marked = baselines(group)
    control = _per_seed(group, CONTROL, metric)
    results = []
    for score in sorted(set(group["score"]) - marked - {CONTROL}):
        values = _per_seed(group, score, metric)
        d, low, high = difference_ci(values, control)
        if not math.isnan(d):
            results.append((d, score, low, high, difference_pvalue(values, control)))
    if not results:
        return None
    # one test per score: Holm's correction keeps the chance of any false "beats uniform" at 5%
    rejected = holm([r[4] for r in results])
    better = sum(r[0] > 0 and hit for r, hit in zip(results, rejected))
    worse = sum(r[0] < 0 and hit for r, hit in zip(results, rejected))
    top = max(results)
    if _seeds(group) < 2:
        above = sum(r[0] > 0 for r in results)
        evidence = (f"{metric[len('test/'):]} vs uniform {fmt(_mean(control))}: {above} of {len(results)} scores above "
                    f"by their mean (one seed: no intervals); largest {top[1]} {top[0]:+.2f}")
    else:
        tested = sum(not math.isnan(r[4]) for r in results)
        evidence = (f"{metric[len('test/'):]} vs uniform {fmt(_mean(control))}: {better} of {len(results)} scores "
                    f"above, {worse} below, {len(results) - better - worse} indistinguishable (t tests, Holm "
                    f"over the {tested} tested); largest {top[1]} {top[0]:+.2f} {_interval(top[2], top[3])}")
    verdict = ("undecided" if _seeds(group) < 2 else "reproduced" if better else "refuted" if worse == len(results)
               else "undecided")
    return Verdict("Wiegreffe & Pinter 2019: learned attention beats uniform attention", name, verdict, evidence)


CLAIMS = (ban_table2, ban_glimpses, jain_wallace, wiegreffe_pinter)


def check_claims(runs: pd.DataFrame, records: dict[str, dict]) -> list[Verdict]:
    """Every claim on every comparison of ``runs`` that holds what it needs."""
    verdicts = []
    for claim in CLAIMS:
        for task, data in task_groups(runs):
            group = runs[(runs["task"] == task) & (runs["data"] == data)]
            found = claim(f"{task}/{data}", group, records)
            if found is not None:
                verdicts.append(found)
    return verdicts


def claims_table(verdicts: list[Verdict]) -> Table:
    rows = [[v.claim, v.comparison, v.verdict, v.evidence] for v in verdicts]
    return Table("Claims", ["claim", "comparison", "verdict", "evidence"], rows, set(),
                 "Differences are paired per seed (Welch's test where two scores share no seed), with 95% "
                 "Student-t intervals, and with one seed nothing is decided. A single difference counts only when "
                 "its interval excludes 0. Where a claim could be decided by any one of many tests (co-attention "
                 "worse than some uni-attention score, some score's τ above 0.5, scores above or below uniform), the "
                 "tests run under Holm's correction over them (one-sided ones at 2.5%, one side of the 95% "
                 "interval); where it needs all of them (every τ below 0.5, every glimpse pair apart, co-attention "
                 "non-inferior to every uni-attention score), each must hold on its own. \"Co-attention ≥ "
                 "uni-attention\" is non-inferiority: not worse by more than the margin (1 point of an accuracy or "
                 "recall, 6 of rsum). The best uni-attention score shown is picked on the same runs "
                 "(its mean is biased upwards): evidence, not the test. Uni-attention: the row-normalised scores "
                 "(one softmax per query) other than the uniform control.")
