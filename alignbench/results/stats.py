"""Statistics over seeds: bootstrap confidence intervals, probability of improvement and
the probability of ranking first.

Every score of a comparison is trained with the same seeds, and a seed gives every score
the same data order and the same initial weights of the shared layers
(:class:`alignbench.run.build.PairedScoreFactory`), so the per-seed results of two scores
are paired: differences are taken seed by seed, on the seeds both scores have.

- :func:`mean_ci`: 95% percentile-bootstrap interval of a mean over seeds (scipy's
  ``bootstrap``);
- :func:`difference_ci`: the mean difference of two scores with its Student-t interval
  (paired: of the per-seed differences; otherwise Welch's), and :func:`difference_pvalue`,
  :func:`holm` for families of such tests;
- :func:`probability_of_improvement`: P(X > Y), the Mann–Whitney U statistic over the
  ``n·m`` pairs of runs divided by ``n·m`` (ties count one half), as rliable defines it
  (Agarwal et al. 2021);
- :func:`rank_first_probability`: how often each score ranks first across comparisons when
  the seeds of every comparison are resampled (the same resampled seeds for every score).

Resampling is seeded, so the same records always give the same report.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as _scipy

CONFIDENCE = 0.95
RESAMPLES = 4000
SEED = 0

__all__ = ["CONFIDENCE", "RESAMPLES", "mean_ci", "difference_ci", "difference_pvalue", "holm", "paired",
           "probability_of_improvement", "rank_first_probability", "separated"]

NAN2 = (math.nan, math.nan)


def _values(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            seed: int = SEED) -> tuple[float, float]:
    """The percentile-bootstrap ``confidence`` interval of the mean of ``values`` (NaN ones
    left out); NaN for fewer than 2 values, the value itself when all are equal."""
    array = _values(values)
    if len(array) < 2:
        return NAN2
    if np.all(array == array[0]):
        return float(array[0]), float(array[0])
    result = _scipy.bootstrap((array,), np.mean, confidence_level=confidence, n_resamples=resamples,
                              method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired(x: Mapping[int, float], y: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two scores' results by seed as arrays: on the seeds both have, seed-aligned, and
    ``True``; when they have no seed in common, each in seed order and ``False``. (A
    comparison still running has scores with more seeds than others: their differences,
    like P(>), are taken on the seeds they share, never on unpaired extra runs.)"""
    xs = {s: v for s, v in x.items() if not math.isnan(v)}
    ys = {s: v for s, v in y.items() if not math.isnan(v)}
    common = sorted(set(xs) & set(ys))
    if common:
        return np.array([xs[s] for s in common]), np.array([ys[s] for s in common]), True
    return np.array([xs[s] for s in sorted(xs)]), np.array([ys[s] for s in sorted(ys)]), False


_CONSTANT = "constant"  # the compared values do not vary: an interval of width 0


def _t_test(x: Mapping[int, float], y: Mapping[int, float]):
    """``mean(x) - mean(y)``, whether it is paired, and the t test behind :func:`difference_ci`
    and :func:`difference_pvalue`: of the per-seed differences on the seeds both have, else
    Welch's of two independent samples. The test is None with fewer than 2 results (pairs)
    on a side, ``_CONSTANT`` when the differences (unpaired: both samples) do not vary."""
    a, b, is_paired = paired(x, y)
    if len(a) == 0 or len(b) == 0:
        return math.nan, is_paired, None
    delta = float(a.mean() - b.mean())
    if is_paired:
        diff = a - b
        if len(diff) < 2:
            return delta, True, None
        return delta, True, (_CONSTANT if np.all(diff == diff[0]) else _scipy.ttest_1samp(diff, 0.0))
    if len(a) < 2 or len(b) < 2:
        return delta, False, None
    if np.all(a == a[0]) and np.all(b == b[0]):
        return delta, False, _CONSTANT
    return delta, False, _scipy.ttest_ind(a, b, equal_var=False)


def difference_ci(x: Mapping[int, float], y: Mapping[int, float],
                  confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``mean(x) - mean(y)`` and its Student-t ``confidence`` interval; ``x`` and ``y`` map seed
    → result. On the seeds both have the differences are paired seed by seed (the t interval
    of the per-seed differences); with no seed in common, Welch's interval of two independent
    samples. NaN interval with fewer than 2 results (pairs) on a side.

    Differences use t intervals, not the bootstrap of :func:`mean_ci`: with the few seeds a
    comparison has, a percentile bootstrap of 2–5 differences is about their range and
    excludes 0 far more often than 5% of the time when there is no difference (about half
    the time with 2 seeds), while the t interval keeps its level for normal errors."""
    delta, _, test = _t_test(x, y)
    if test is None:
        return delta, math.nan, math.nan
    if test is _CONSTANT:
        return delta, delta, delta
    interval = test.confidence_interval(confidence)
    return delta, float(interval.low), float(interval.high)


ALTERNATIVES = ("two-sided", "greater", "less")


def difference_pvalue(x: Mapping[int, float], y: Mapping[int, float], alternative: str = "two-sided") -> float:
    """p-value of ``mean(x) = mean(y)`` by the same t test as :func:`difference_ci` (paired
    on the seeds both have; NaN without enough results): two-sided, or one-sided against
    ``mean(x) > mean(y)`` (``greater``) or ``mean(x) < mean(y)`` (``less``), the form to use
    when only one direction would count (a family of one-sided tests under Holm's
    correction then spends nothing on differences in the other direction)."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r} (valid: {', '.join(ALTERNATIVES)})")
    delta, is_paired, test = _t_test(x, y)
    if test is None:
        return math.nan
    if test is _CONSTANT:  # scipy's answer for constant samples: 0 when they differ; paired equal ones: 1
        two_sided = 0.0 if delta != 0 else (1.0 if is_paired else math.nan)
    else:
        two_sided = float(test.pvalue)
    if alternative == "two-sided" or math.isnan(two_sided):
        return two_sided
    toward = delta > 0 if alternative == "greater" else delta < 0
    return two_sided / 2 if toward else 1 - two_sided / 2  # the t distribution is symmetric


def holm(pvalues: Sequence[float], alpha: float = 1 - CONFIDENCE) -> list[bool]:
    """Which of ``pvalues`` are rejected at family-wise level ``alpha`` by Holm's step-down
    procedure (NaN never rejected)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    rejected = [False] * len(pvalues)
    for rank, (p, i) in enumerate(order):
        if p > alpha / (len(order) - rank):
            break
        rejected[i] = True
    return rejected


def separated(low: float, high: float) -> bool:
    """Whether an interval of a difference excludes 0 (NaN: not shown to be separated)."""
    return not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0)


def probability_of_improvement(x: Mapping[int, float], y: Mapping[int, float], direction: int = 1) -> float:
    """P(X > Y) for ``direction`` +1 (higher is better), P(X < Y) for -1: the Mann–Whitney U
    statistic of the two scores' results divided by ``n·m`` (ties count one half). The seeds
    both scores have are used, as in :func:`difference_ci` (all of each when they have none
    in common). NaN if either is
    empty or ``direction`` is 0."""
    a, b, _ = paired(x, y)
    if direction == 0 or len(a) == 0 or len(b) == 0:
        return math.nan
    if direction < 0:
        a, b = -a, -b
    u = _scipy.mannwhitneyu(a, b, alternative="two-sided").statistic
    return float(u / (len(a) * len(b)))


def _ranks_first(means: np.ndarray) -> np.ndarray:
    """Per resample (row), the share of first place of each score (column): ties split it;
    a NaN mean rank never ranks first."""
    filled = np.where(np.isnan(means), np.inf, means)
    best = filled.min(axis=1, keepdims=True)
    first = (filled == best) & np.isfinite(filled)
    counts = first.sum(axis=1, keepdims=True)
    return np.divide(first, counts, out=np.zeros_like(first, dtype=float), where=counts > 0)


def rank_first_probability(comparisons: Mapping[str, Mapping[str, Mapping[int, float]]],
                           directions: Mapping[str, int] | None = None, resamples: int = RESAMPLES,
                           seed: int = SEED) -> dict[str, float]:
    """How often each score has the best mean rank over ``comparisons`` (comparison → score →
    seed → result of its primary metric) when every comparison's seeds are resampled with
    replacement, the same resampled seeds for all its scores (pairing kept). A score ranks
    within the comparisons it took part in; ties share the first place. ``directions``:
    comparison → +1 (higher is better, the default) or -1."""
    scores = sorted({s for per_score in comparisons.values() for s in per_score})
    if not scores:
        return {}
    rng = np.random.default_rng(seed)
    rank_sum = np.zeros((resamples, len(scores)))
    rank_count = np.zeros(len(scores))
    for name, per_score in comparisons.items():
        sign = (directions or {}).get(name, 1) or 1
        seeds = sorted({s for values in per_score.values() for s in values})
        table = np.full((len(seeds), len(scores)), np.nan)  # seed × score
        for j, score in enumerate(scores):
            for i, s in enumerate(seeds):
                table[i, j] = per_score.get(score, {}).get(s, np.nan)
        present = ~np.all(np.isnan(table), axis=0)
        picks = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
        with warnings.catch_warnings():  # a resample may hold no result of a score: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(table[picks], axis=1) * sign  # resample × score
        # a resample in which a score has no result (it lacks some seeds) ranks it last
        means = np.where(np.isnan(means) & present, -np.inf, means)
        rank_sum[:, present] += _min_ranks(means[:, present])
        rank_count[present] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rank = np.where(rank_count > 0, rank_sum / np.maximum(rank_count, 1), np.nan)
    share = _ranks_first(mean_rank).mean(axis=0)
    return {score: float(p) for score, p in zip(scores, share)}


def _min_ranks(means: np.ndarray) -> np.ndarray:
    """Per row, the rank of each column's value (1 = highest; ties share the lower rank)."""
    return (means[:, None, :] > means[:, :, None]).sum(axis=2) + 1.0
