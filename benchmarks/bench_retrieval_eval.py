"""Retrieval evaluation speed: chunked all-pairs scoring vs a per-caption loop.

Scores every image against every caption with the cross-attention matcher of the
retrieval task (random weights; speed does not depend on training) in two ways, in one
run:

- ``chunked``: :func:`alignbench.models.matching.chunked_similarity`, blocks of
  ``--image-chunk`` images × ``--caption-chunk`` captions; each score prepares every
  image and caption once per block (e.g. ``W k``) and pairs the prepared tensors;
- ``per-caption loop``: as SCAN's reference evaluation scores, one caption at a time
  against the shard of all images, the caption repeated per image.

Both give the same similarity matrix (checked). Prints times, the ratio and the peak
resident memory of each (each measured in a fresh child process).

    python benchmarks/bench_retrieval_eval.py                      # N=200 × 1,000, d=1024
    python benchmarks/bench_retrieval_eval.py --scores cosine ban --small
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch

from alignbench.models.matching import CrossAttentionMatcher, chunked_similarity
from alignbench.config import build_score


def make_inputs(n_images: int, n_captions: int, regions: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, 17, (n_captions,), generator=g)
    width = int(lengths.max())
    words = torch.randn(n_captions, width, dim, generator=g)
    mask = torch.arange(width)[None] < lengths[:, None]
    return words, mask, torch.randn(n_images, regions, dim, generator=g)


def make_matcher(name: str, dim: int) -> CrossAttentionMatcher:
    torch.manual_seed(0)
    extra = {"glimpses": 1} if name == "ban" else {}
    return CrossAttentionMatcher(lambda: build_score(name, dim, dim, **extra)).eval()


def per_caption_loop(m: CrossAttentionMatcher, words, mask, regions) -> torch.Tensor:
    sims = torch.empty(regions.shape[0], words.shape[0])
    for j in range(words.shape[0]):
        n = int(mask[j].sum())
        sims[:, j] = m(words[j:j + 1, :n], mask[j:j + 1, :n], regions)[0][:, 0]
    return sims


def _child(method: str, name: str, args: dict, queue) -> None:
    torch.set_num_threads(args["threads"]) if args["threads"] else None
    words, mask, regions = make_inputs(args["images"], args["captions"], args["regions"], args["dim"])
    m = make_matcher(name, args["dim"])
    with torch.no_grad():
        t0 = time.perf_counter()
        if method == "chunked":
            sims = chunked_similarity(m, words, mask, regions, image_chunk=args["image_chunk"],
                                      caption_chunk=args["caption_chunk"])
        else:
            sims = per_caption_loop(m, words, mask, regions)
        seconds = time.perf_counter() - t0
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, sims.numpy()))


def run(method: str, name: str, args: dict):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scores", nargs="+", default=["scaled_dot", "general", "cosine", "ban"])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--captions", type=int, default=1000)
    p.add_argument("--regions", type=int, default=36)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--image-chunk", type=int, default=20)
    p.add_argument("--caption-chunk", type=int, default=100)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--small", action="store_true", help="N=40 × 200, d=256: a quick smoke run")
    a = p.parse_args()
    if a.small:
        a.images, a.captions, a.dim = 40, 200, 256
    args = {"images": a.images, "captions": a.captions, "regions": a.regions, "dim": a.dim,
            "image_chunk": a.image_chunk, "caption_chunk": a.caption_chunk, "threads": a.threads}
    print(f"N={a.images} images × {a.captions} captions, {a.regions} regions, d={a.dim}, caption lengths 8-16, "
          f"chunks {a.image_chunk}×{a.caption_chunk}, threads={a.threads or torch.get_num_threads()}")
    print(f"{'score':12s} {'chunked s':>10s} {'loop s':>10s} {'speed-up':>9s} {'chunked MB':>11s} {'loop MB':>9s}  same")
    for name in a.scores:
        t_chunk, mem_chunk, s_chunk = run("chunked", name, args)
        t_loop, mem_loop, s_loop = run("loop", name, args)
        same = bool(abs(s_chunk - s_loop).max() < 1e-4)
        print(f"{name:12s} {t_chunk:10.2f} {t_loop:10.2f} {t_loop / t_chunk:8.1f}x {mem_chunk:11.0f} {mem_loop:9.0f}  {same}")
    print("target: chunked ≥ 4× faster than the per-caption loop; MB = peak resident memory of the process")


if __name__ == "__main__":
    main()
