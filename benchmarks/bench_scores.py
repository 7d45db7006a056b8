#!/usr/bin/env python
"""Forward+backward throughput of every registered alignment score (CPU benchmark).

Usage::

    python benchmarks/bench_scores.py                    # reference shape, all scores
    python benchmarks/bench_scores.py --small            # quick smoke run (tiny shape)
    python benchmarks/bench_scores.py --scores dot ban   # subset ("ban_block" = BAN + pooling)
    python benchmarks/bench_scores.py --threads 2 --repeats 7
    python benchmarks/bench_scores.py --profile          # torch.profiler op table of the BAN block
    PYTHONPATH=tests/user_pkg python benchmarks/bench_scores.py --search-path tests/user_pkg/user_conf

What one timed step is, for every score returned by ``alignbench.config.list_scores()``
(so a user-added ``conf/score/<name>.yaml``, or one found via ``--search-path``, is included)::

    logits  = score(query, key)                      # [B, H, Lq, Lk]
    weights = attend(logits, score.normalization)    # alignbench.attention.attend
    loss    = (weights * R).sum()                    # R: fixed random [B, H, Lq, Lk]
    loss.backward()                                  # query and key require grad too

Reference shape: B=64, Lq=14, Lk=36, q_dim=k_dim=d=1024. BAN is built with G=8 glimpses
and rank 3·d = 3072. The extra row ``ban_block`` adds BAN's bilinear pooling for all G
glimpses: G separate ``BilinearPooling(d, d, d)`` modules (one per glimpse, as BAN has),
module g applied to (query, key, weights.unbind(1)[g]); their outputs enter the loss as
``Σ_g (pooled_g * R_g).sum()``. (In the VQA model the query side also gets a residual
update between glimpses; that is not part of this block.)

Reported per row: median wall time over ``--repeats`` timed steps after ``--warmup``
untimed ones, analytic GFLOP of forward+backward, achieved GFLOP/s, and that rate as a
percentage of the fp32 matmul throughput measured in the same run (reference GEMM
``[B·Lk, d] @ [d, 3·d]`` forward+backward, i.e. the shape of BAN's key projection).
The reference is timed interleaved with each row (one reference step, then one sample
of the row, ``--repeats`` times), and each row is compared with the median of its own
reference samples ("% matmul"), so machine load that changes during the run affects
both sides alike; "% best" is the same ratio from the fastest samples. Steps faster than
50 ms are timed in groups and reported per step. "GF counted"
cross-checks the analytic count with ``torch.utils.flop_counter.FlopCounterMode``
(it counts mm/bmm/addmm/baddbmm in forward and backward); it is also the only count for
scores the script has no formula for (user-added ones). Peak memory is from
``torch.profiler`` (``profile_memory=True``): net peak of live CPU bytes allocated during
one step, and the largest single allocation.

FLOP accounting (matmuls only; every elementwise op, reduction, softmax, normalize,
tanh, ReLU, bias add, the masking in ``attend`` and the loss are ignored). A matmul
[m, k] @ [k, n] costs 2·m·n·k forward; its backward computes the gradients of both
operands (two matmuls of the same size), so forward+backward = 3 × forward. Inputs
require grad, so this holds for the first layer too. With Nq = B·Lq, Nk = B·Lk:

    dot, scaled_dot   QKᵀ                                 2·B·Lq·Lk·Dk   (+ 2·Nq·Dq·Dk proj if Dq≠Dk)
    cosine            as dot (normalize ignored)          2·B·Lq·Lk·Dk   (+ 2·Nq·Dq·Dk proj if Dq≠Dk)
    general/bilinear  qwk: (QW)Kᵀ                          2·Nq·Dq·Dk + 2·B·Lq·Lk·Dk
                      kwq: Q(KW)ᵀ                          2·Nk·Dk·Dq + 2·B·Lq·Lk·Dq
    biased_general,   Q (KWᵀ+b)ᵀ                           2·Nk·Dk·Dq + 2·B·Lq·Lk·Dq
    activated_general
    coattention       tanh((QW)Kᵀ)                         2·Nq·Dq·Dk + 2·B·Lq·Lk·Dk
    additive (h)      W₁Q, W₂K, wᵀ·[B,Lq,Lk,h]              2·Nq·Dq·h + 2·Nk·Dk·h + 2·B·Lq·Lk·h
    ban (G, K=rank)   XU, YV, G maps (XU∘p_g)(YV)ᵀ          2·Nq·Dq·K + 2·Nk·Dk·K + 2·B·G·Lq·Lk·K
    ban_block         ban + G × BilinearPooling(K'=out·pool):
                      per glimpse XU', YV', A(YV')          2·Nq·Dq·K' + 2·Nk·Dk·K' + 2·B·Lq·Lk·K'
    all of the above  × 3 for forward+backward
    reference GEMM    [Nk, d] @ [d, 3d]                     3 × 2·Nk·d·3d

At the reference shape: ban = 65.2 GF, ban_block = 227.8 GF, reference GEMM = 43.5 GF.

BAN memory check (on the ban_block step): BAN must never build a [B, Lq, Lk, rank] tensor
(64·14·36·3072 = 99.1 M elements, 378 MiB fp32). A tensor counts as one if it has at least
that many elements or its dims include Lq, Lk and rank. Checked three ways, each printed
with the largest tensor found: (a) a saved-tensor hook sees every tensor autograd saves
for backward; (b) a TorchDispatchMode sees every tensor an aten op allocates in forward
and backward (views skipped); (c) torch.profiler (profile_memory=True) gives the largest
single CPU allocation in bytes, the op that made it, and the peak live memory.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from alignbench.attention import attend
from alignbench.scores import (
    ActivatedGeneralScore,
    AdditiveScore,
    BANScore,
    BiasedGeneralScore,
    BilinearPooling,
    CoAttentionScore,
    CosineScore,
    DotScore,
    GeneralScore,
    ScaledDotScore,
)
from alignbench.config import build_score, list_scores

BLOCK = "ban_block"
TARGET_PCT = 70.0


@dataclass(frozen=True)
class Shape:
    batch: int
    lq: int
    lk: int
    dim: int
    glimpses: int

    @property
    def rank(self) -> int:
        return 3 * self.dim


REFERENCE = Shape(batch=64, lq=14, lk=36, dim=1024, glimpses=8)
SMALL = Shape(batch=8, lq=10, lk=16, dim=128, glimpses=8)


# --------------------------------------------------------------------------- FLOPs
def score_flops(score: nn.Module, s: Shape) -> float | None:
    """Analytic forward+backward matmul FLOPs of ``score`` (see module docstring), or None.

    Matches the exact class, so a user subclass that overrides ``score`` is not mis-counted
    (it gets None and the table falls back to the FlopCounterMode count).
    """
    b, lq, lk = s.batch, s.lq, s.lk
    nq, nk = b * lq, b * lk
    dq, dk = score.q_dim, score.k_dim
    pairs = b * lq * lk
    kind = type(score)
    if kind is BANScore:
        k = score.rank
        fwd = 2 * nq * dq * k + 2 * nk * dk * k + 2 * pairs * score.heads * k
    elif kind is AdditiveScore:
        h = score.hidden_dim
        fwd = 2 * nq * dq * h + 2 * nk * dk * h + 2 * pairs * h
    elif kind is CoAttentionScore:
        fwd = 2 * nq * dq * dk + 2 * pairs * dk
    elif kind in (BiasedGeneralScore, ActivatedGeneralScore):
        fwd = 2 * nk * dk * dq + 2 * pairs * dq
    elif kind is GeneralScore:
        if score.orientation == "qwk":
            fwd = 2 * nq * dq * dk + 2 * pairs * dk
        else:
            fwd = 2 * nk * dk * dq + 2 * pairs * dq
    elif kind in (DotScore, ScaledDotScore, CosineScore):
        fwd = 2 * pairs * dk + (2 * nq * dq * dk if score.proj is not None else 0)
    else:
        return None
    return 3.0 * fwd


def pooling_flops(pool: BilinearPooling, s: Shape) -> float:
    """Forward+backward matmul FLOPs of one BilinearPooling applied to one attention map."""
    k = pool.out_dim * pool.pool
    x_dim, y_dim = pool.x_map.in_features, pool.y_map.in_features
    fwd = 2 * s.batch * s.lq * x_dim * k + 2 * s.batch * s.lk * y_dim * k + 2 * s.batch * s.lq * s.lk * k
    return 3.0 * fwd


def reference_flops(s: Shape) -> float:
    return 3.0 * 2 * (s.batch * s.lk) * s.dim * s.rank


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One benchmark row: ``step()`` runs forward+backward once; ``reset()`` drops grads."""

    name: str
    step: Callable[[], torch.Tensor]
    reset: Callable[[], None]
    flops: float | None
    note: str = ""


def _inputs(s: Shape, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(s.batch, s.lq, s.dim, generator=g).requires_grad_(True)
    key = torch.randn(s.batch, s.lk, s.dim, generator=g).requires_grad_(True)
    return query, key


def _resetter(*things: nn.Module | torch.Tensor) -> Callable[[], None]:
    tensors: list[torch.Tensor] = []
    for t in things:
        tensors.extend(t.parameters() if isinstance(t, nn.Module) else [t])

    def reset() -> None:
        for t in tensors:
            t.grad = None

    return reset


def make_score_case(
    name: str, s: Shape, search_path: list[str], score: nn.Module | None = None, label: str | None = None
) -> Case:
    """Case for a registered score ."""
    torch.manual_seed(0)
    if score is None:
        overrides = {"glimpses": s.glimpses, "rank": s.rank} if name == "ban" else {}
        score = build_score(name, s.dim, s.dim, search_path=search_path, **overrides)
    score.train()
    query, key = _inputs(s)
    with torch.no_grad():
        heads = score(query, key).shape[1]
    target = torch.randn(s.batch, heads, s.lq, s.lk, generator=torch.Generator().manual_seed(1))

    def step() -> torch.Tensor:
        weights = attend(score(query, key), score.normalization)
        loss = (weights * target).sum()
        loss.backward()
        return loss

    note = type(score).__name__ + (f" G={score.heads} rank={score.rank}" if isinstance(score, BANScore) else "")
    return Case(label or name, step, _resetter(score, query, key), score_flops(score, s), note)


def make_block_case(
    s: Shape, score: nn.Module | None = None, pools: nn.Module | None = None, label: str = BLOCK,
    forward: Callable | None = None,
) -> Case:
    """BAN score + ``attend`` + G BilinearPooling modules (one per glimpse) + loss + backward.

    ``forward(score, pools, query, key) -> (weights, pooled [B, G, out])`` replaces the
    pooling step.
    """
    torch.manual_seed(0)
    if score is None:
        score = build_score("ban", s.dim, s.dim, glimpses=s.glimpses, rank=s.rank)
    if pools is None:
        pools = nn.ModuleList(BilinearPooling(s.dim, s.dim, s.dim) for _ in range(score.heads))
    score.train(), pools.train()
    query, key = _inputs(s)
    g = torch.Generator().manual_seed(1)
    target = torch.randn(s.batch, score.heads, s.lq, s.lk, generator=g)
    out_dim = pools[0].out_dim
    pool_target = torch.randn(s.batch, score.heads, out_dim, generator=g)

    def default_forward(score, pools, query, key):
        weights = attend(score(query, key), score.normalization)
        # unbind: one backward op for all glimpses (weights[:, g] zero-fills a [B, G, Lq, Lk] grad per
        # glimpse)
        pooled = torch.stack([pool(query, key, w) for pool, w in zip(pools, weights.unbind(1))], dim=1)
        return weights, pooled

    fwd = forward or default_forward

    def step() -> torch.Tensor:
        weights, pooled = fwd(score, pools, query, key)
        loss = (weights * target).sum() + (pooled * pool_target).sum()
        loss.backward()
        return loss

    flops = None
    base = score_flops(score, s)
    if base is not None:
        flops = base + sum(pooling_flops(pool, s) for pool in pools)
    note = f"BAN G={score.heads} rank={score.rank} + {len(pools)}×BilinearPooling({s.dim},{s.dim},{out_dim})"
    return Case(label, step, _resetter(score, pools, query, key), flops, note)


# --------------------------------------------------------------------------- measuring
def time_case(case: Case, warmup: int, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        case.reset()
        case.step()
    samples = []
    for _ in range(repeats):
        case.reset()
        start = time.perf_counter()
        case.step()
        samples.append(time.perf_counter() - start)
    case.reset()
    return samples


MIN_SAMPLE_S = 0.05  # steps faster than this are timed in groups (per-step time reported)


def time_interleaved(case: Case, ref: Case, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate one reference-GEMM step and one sample of ``case``, ``repeats`` times.

    Interleaving makes the percentage robust to CPU contention that drifts during the run
    (other processes on a shared machine). A sample of a fast case times ``inner`` steps
    together (so a sample lasts >= MIN_SAMPLE_S) and reports seconds per step.
    """
    first = time_case(case, max(warmup, 1), 1)[0]
    inner = max(1, min(200, math.ceil(MIN_SAMPLE_S / max(first, 1e-6))))
    samples, ref_samples = [], []
    for _ in range(repeats):
        ref_samples += time_case(ref, 0, 1)
        elapsed = 0.0
        for _ in range(inner):
            case.reset()
            start = time.perf_counter()
            case.step()
            elapsed += time.perf_counter() - start
        samples.append(elapsed / inner)
    case.reset()
    return samples, ref_samples


def counted_flops(case: Case) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    case.reset()
    with FlopCounterMode(display=False) as counter:
        case.step()
    case.reset()
    return float(counter.get_total_flops())


@dataclass
class MemoryReport:
    peak_bytes: int
    largest_bytes: int
    largest_op: str
    largest_shapes: str


_ALLOCATORS = {"[memory]", "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::resize_",
               "aten::zeros", "aten::zeros_like", "aten::zero_", "aten::fill_", "aten::new_empty",
               "aten::new_empty_strided", "aten::new_zeros"}


def profile_memory(case: Case) -> MemoryReport:
    """Peak live bytes and largest single CPU allocation during one step (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    case.reset()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        case.step()
    case.reset()
    events = list(prof.profiler.kineto_results.events())
    memory = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
    live = peak = 0
    largest = None
    for event in memory:
        live += event.nbytes()
        peak = max(peak, live)
        if largest is None or event.nbytes() > largest.nbytes():
            largest = event
    op, shapes = "?", ""
    if largest is not None:  # innermost op (bar allocator ops) on the same thread enclosing the allocation
        t, thread = largest.start_ns(), largest.start_thread_id()
        enclosing = [
            e for e in events
            if e.name() not in _ALLOCATORS and e.start_thread_id() == thread
            and e.start_ns() <= t <= e.start_ns() + e.duration_ns()
        ]
        if enclosing:
            inner = min(enclosing, key=lambda e: e.duration_ns())
            op = inner.name()
            shapes = " ".join(str(list(x)) for x in inner.shapes() if x)
    return MemoryReport(peak, largest.nbytes() if largest else 0, op, shapes)


def _is_pairwise_rank(shape: tuple[int, ...], s: Shape, rank: int) -> bool:
    """True for a tensor of >= B·Lq·Lk·rank elements or whose dims include Lq, Lk and rank."""
    numel = math.prod(shape)
    dims = list(shape)
    has_all = True
    for d in (s.lq, s.lk, rank):
        if d in dims:
            dims.remove(d)
        else:
            has_all = False
    return numel >= s.batch * s.lq * s.lk * rank or has_all


@dataclass
class TensorCheck:
    saved_numel: int
    saved_shape: tuple[int, ...]
    saved_bad: list[tuple[int, ...]]
    out_numel: int
    out_shape: tuple[int, ...]
    out_op: str
    out_bad: list[tuple[str, tuple[int, ...]]]


def check_tensors(case: Case, s: Shape, rank: int) -> TensorCheck:
    """Largest tensor saved for backward (saved-tensor hook) and largest tensor any aten op
    returns in forward+backward (TorchDispatchMode; outputs that are views of an input are skipped), and those that look like [B, Lq, Lk, rank]."""
    from torch.utils._python_dispatch import TorchDispatchMode

    saved: list[tuple[int, ...]] = []
    outputs: list[tuple[str, tuple[int, ...]]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(tuple(t.shape))
        return t

    class Outputs(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {t.untyped_storage().data_ptr() for t in torch.utils._pytree.tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor)}
            for t in out if isinstance(out, (tuple, list)) else (out,):  # new storage only, not views
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                    outputs.append((str(func), tuple(t.shape)))
            return out

    case.reset()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), Outputs():
        case.step()
    case.reset()
    big_saved = max(saved, key=math.prod, default=())
    big_out = max(outputs, key=lambda o: math.prod(o[1]), default=("?", ()))
    return TensorCheck(
        math.prod(big_saved), big_saved, [x for x in saved if _is_pairwise_rank(x, s, rank)],
        math.prod(big_out[1]), big_out[1], big_out[0],
        [o for o in outputs if _is_pairwise_rank(o[1], s, rank)],
    )


def reference_matmul_case(s: Shape) -> Case:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(s.batch * s.lk, s.dim, generator=g).requires_grad_(True)
    w = torch.randn(s.dim, s.rank, generator=g).requires_grad_(True)
    grad = torch.randn(s.batch * s.lk, s.rank, generator=g)

    def step() -> torch.Tensor:
        out = a @ w
        out.backward(grad)
        return out

    return Case("matmul ref", step, _resetter(a, w), reference_flops(s),
                f"[{s.batch * s.lk},{s.dim}]@[{s.dim},{s.rank}] fwd+bwd")


# --------------------------------------------------------------------------- output
@dataclass
class Row:
    name: str
    median_ms: float
    min_ms: float
    gflop: float | None
    gflop_counted: float | None
    ref_rate: float  # GFLOP/s of the reference GEMM timed interleaved with this row
    ref_samples: list[float]
    ref_flop: float  # GFLOP of one reference step
    peak_mb: float | None = None
    largest_mb: float | None = None
    note: str = ""

    @property
    def flop(self) -> float | None:
        return self.gflop if self.gflop is not None else self.gflop_counted

    def rate(self) -> float | None:
        return None if self.flop is None else self.flop / (self.median_ms / 1e3)

    def pct(self) -> float | None:
        rate = self.rate()
        return None if rate is None else 100.0 * rate / self.ref_rate

    def pct_best(self) -> float | None:
        """Best-case ratio: fastest sample of the row vs fastest reference sample next to it."""
        if self.flop is None:
            return None
        return 100.0 * (self.flop / (self.min_ms / 1e3)) / (self.ref_flop / min(self.ref_samples))


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    header = (f"{'score':<20} {'median ms':>10} {'min ms':>9} {'GF analytic':>11} {'GF counted':>10} "
              f"{'GFLOP/s':>8} {'ref GF/s':>8} {'% matmul':>8} {'% best':>6} {'peak MB':>8} {'max alloc MB':>12}  note")
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.gflop is not None and r.gflop_counted is not None and not math.isclose(r.gflop, r.gflop_counted,
                                                                                    rel_tol=0.01):
            r.note += f"  [analytic != counted: check the formula for {r.name}]"
        print(f"{r.name:<20} {r.median_ms:>10.2f} {r.min_ms:>9.2f} {fmt(r.gflop, '11.3f'):>11} "
              f"{fmt(r.gflop_counted, '10.3f'):>10} {fmt(r.rate(), '8.1f'):>8} {r.ref_rate:>8.1f} "
              f"{fmt(r.pct(), '8.1f'):>8} {fmt(r.pct_best(), '6.1f'):>6} {fmt(r.peak_mb, '8.1f'):>8} {fmt(r.largest_mb, '12.1f'):>12}  {r.note}")


def measure(case: Case, ref: Case, args: argparse.Namespace, memory: bool = True) -> tuple[Row, MemoryReport | None]:
    counted = counted_flops(case) / 1e9
    samples, ref_samples = time_interleaved(case, ref, args.warmup, args.repeats)
    mem = profile_memory(case) if memory else None
    row = Row(
        case.name, 1e3 * statistics.median(samples), 1e3 * min(samples),
        None if case.flops is None else case.flops / 1e9, counted,
        ref.flops / 1e9 / statistics.median(ref_samples), ref_samples, ref.flops / 1e9,
        None if mem is None else mem.peak_bytes / 2**20, None if mem is None else mem.largest_bytes / 2**20,
        case.note,
    )
    return row, mem


def run_profile(case: Case, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity, profile

    case.reset()
    case.step()
    case.reset()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True) as prof:
        case.step()
    case.reset()
    print(f"\n=== torch.profiler: {case.name} (one forward+backward, sorted by self CPU time) ===")
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=28, max_shapes_column_width=60))


# --------------------------------------------------------------------------- main
def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per score (median reported); default 5")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing; default 1")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--scores", nargs="+", default=None,
                   help=f"subset of score names (comma or space separated); '{BLOCK}' selects the BAN block")
    p.add_argument("--small", action="store_true", help=f"tiny shape for a smoke run: {SMALL}")
    p.add_argument("--search-path", action="append", default=[],
                   help="extra config dir holding score/<name>.yaml (repeatable), as for build_score")
    p.add_argument("--no-memory", action="store_true", help="skip the per-score torch.profiler memory pass")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler op table for ban and the BAN block")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    if args.scores is not None:
        args.scores = [n for item in args.scores for n in item.split(",") if n]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    s = SMALL if args.small else REFERENCE
    available = list_scores(args.search_path)
    names = available + [BLOCK] if args.scores is None else args.scores
    unknown = [n for n in names if n not in available and n != BLOCK]
    if unknown:
        print(f"unknown score(s) {', '.join(unknown)}; available: {', '.join(available)}, {BLOCK}", file=sys.stderr)
        return 2

    print(f"alignbench score benchmark: torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"B={s.batch} Lq={s.lq} Lk={s.lk} d={s.dim} (BAN G={s.glimpses} rank={s.rank}), "
          f"warmup={args.warmup} repeats={args.repeats}, fp32 CPU, load average {_load()}")

    ref = reference_matmul_case(s)
    time_case(ref, max(args.warmup, 1), 1)  # warm up MKL

    rows: list[Row] = []
    block_mem: MemoryReport | None = None
    block_case: Case | None = None
    for name in names:
        case = make_block_case(s) if name == BLOCK else make_score_case(name, s, args.search_path)
        row, mem = measure(case, ref, args, memory=not args.no_memory or name == BLOCK)
        rows.append(row)
        if name == BLOCK:
            block_mem, block_case = mem, case
        print(f"  done {name}: {row.median_ms:.1f} ms", file=sys.stderr)

    all_ref = [x for r in rows for x in r.ref_samples]
    ref_ms = 1e3 * statistics.median(all_ref)
    print()
    print(f"fp32 matmul reference {ref.note}: {ref.flops / 1e9:.2f} GF; over all {len(all_ref)} samples median "
          f"{ref_ms:.1f} ms (min {1e3 * min(all_ref):.1f}, max {1e3 * max(all_ref):.1f}) -> "
          f"{ref.flops / 1e9 / (ref_ms / 1e3):.1f} GFLOP/s (best sample {ref.flops / 1e9 / min(all_ref):.1f})")
    print("GF = analytic matmul GFLOP of forward+backward (elementwise ops ignored; 'counted' = FlopCounterMode).")
    print("GFLOP/s = GF / median time. The reference GEMM is timed interleaved with each row ('ref GF/s', median")
    print("of that row's samples); % matmul = GFLOP/s / ref GF/s; % best = same ratio from the fastest sample of each")
    print("(less sensitive to other processes on the machine). Peak / max alloc: torch.profiler, one step.\n")
    print_table(rows)

    if block_case is not None:
        forbidden = s.batch * s.lq * s.lk * s.rank
        chk = check_tensors(block_case, s, s.rank)
        print(f"\nBAN memory check (forbidden [B, Lq, Lk, rank] = [{s.batch}, {s.lq}, {s.lk}, {s.rank}] = "
              f"{forbidden:,} elements = {forbidden * 4 / 2**20:.0f} MB fp32; a tensor fails if it has that many "
              f"elements or its dims include Lq, Lk and rank):")
        print(f"  largest tensor saved for backward (saved-tensor hook): {list(chk.saved_shape)} = "
              f"{chk.saved_numel:,} elements -> {'FAIL ' + str(chk.saved_bad[:3]) if chk.saved_bad else 'OK'}")
        print(f"  largest tensor any aten op allocates, fwd+bwd (dispatch mode): {chk.out_op} -> "
              f"{list(chk.out_shape)} = {chk.out_numel:,} elements -> "
              f"{'FAIL ' + str(chk.out_bad[:3]) if chk.out_bad else 'OK'}")
        if block_mem is not None:
            print(f"  largest single CPU allocation (torch.profiler): {block_mem.largest_bytes / 2**20:.1f} MB "
                  f"in {block_mem.largest_op} {block_mem.largest_shapes} -> "
                  f"{'OK' if block_mem.largest_bytes < forbidden * 4 else 'FAIL'}; "
                  f"peak live CPU memory during the step: {block_mem.peak_bytes / 2**20:.1f} MB")

    if args.profile:
        run_profile(make_score_case("ban", s, []))
        run_profile(make_block_case(s))

    print(f"\nload average at the end: {_load()} on {os.cpu_count()} CPUs (other processes skew timings; "
          "compare rows of the same run, or use --threads 1 on a busy machine)")
    block_row = next((r for r in rows if r.name == BLOCK), None)
    if block_row is not None and block_row.pct() is not None:
        pct = block_row.pct()
        print(f"\nBAN block: {pct:.1f}% of measured matmul throughput (target ≥ {TARGET_PCT:.0f}%) "
              f"[median-based; best-sample ratio {block_row.pct_best():.1f}%]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
