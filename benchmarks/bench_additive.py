"""Additive score cost relative to dot: the blocked computation against the plain formula.

Times, in one run and one process, at the sizes of the default comparison
(``preset=compare/default/<task>``):

- ``retrieval eval``: :func:`alignbench.models.matching.chunked_similarity` of every image
  against every caption (no grad; 16 regions, caption lengths 11-28 as the synthetic
  captions, hidden size 128, blocks of 20 images × 100 captions);
- ``t2i step``: one pixel warm-up training step of the text-to-image generator (B=64,
  caption lengths 10-34, 64 channels, attention stages at 8×8 and 16×16: generator forward,
  MSE to a target image, backward, Adam step).

Rows: ``dot``; ``additive`` (today's :class:`~alignbench.scores.AdditiveScore`, blocked);
``additive (plain)``: the same weights with the formula it replaced,
``v(tanh(W₁q[:, :, None] + W₂k[:, None]))`` on the whole ``[B, Lq, Lk, h]`` tensor, kept
here only as the reference. Prints each row's best time over ``--repeats`` runs, its ratio
to dot, the speed-up of the blocked form and the largest difference between the two
additive forms (similarities; generator gradients after one step).

    python benchmarks/bench_additive.py --threads 1          # about 2 min on one core
    python benchmarks/bench_additive.py --small              # smoke run
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn import functional as F

from alignbench.config import build_score
from alignbench.models.generation import Generator
from alignbench.models.matching import CrossAttentionMatcher, chunked_similarity
from alignbench.scores import AdditiveScore


class PlainAdditiveScore(AdditiveScore):
    """The reference: the formula before blocking, the whole tanh tensor at once."""

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(query.unsqueeze(2) + key.unsqueeze(1))
        return self.vector(hidden).squeeze(-1).unsqueeze(1)


def factory(name: str, q_dim: int, k_dim: int) -> torch.nn.Module:
    torch.manual_seed(0)  # the same weights for both additive forms
    if name == "additive (plain)":
        plain = PlainAdditiveScore(q_dim, k_dim, hidden_dim=build_score("additive", q_dim, k_dim).hidden_dim)
        torch.manual_seed(0)
        plain.load_state_dict(build_score("additive", q_dim, k_dim).state_dict())
        return plain
    return build_score(name, q_dim, k_dim)


def captions(n: int, low: int, high: int, dim: int, g: torch.Generator):
    lengths = torch.randint(low, high + 1, (n,), generator=g)
    mask = torch.arange(high)[None] < lengths[:, None]
    return torch.randn(n, high, dim, generator=g), mask


def retrieval_eval(name: str, a) -> tuple[float, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    words, mask = captions(a.captions, 11, 28, 128, g)
    regions = torch.randn(a.images, 16, 128, generator=g)
    matcher = CrossAttentionMatcher(lambda: factory(name, 128, 128)).eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        sims = chunked_similarity(matcher, words, mask, regions, image_chunk=20, caption_chunk=100)
    return time.perf_counter() - t0, sims


def t2i_step(name: str, a) -> tuple[float, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    words, mask = captions(a.batch, 10, 34, 128, g)
    words = words.requires_grad_()  # as from the caption encoder
    target = torch.rand(a.batch, 3, 32, 32, generator=g)
    noise = torch.randn(a.batch, 32, generator=g)
    torch.manual_seed(0)
    gen = Generator(128, lambda q, k: factory(name, q, k), image_size=32, noise_dim=32, channels=64,
                    attention_at=(8, 16))
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    sentence = (words * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    image, _ = gen(sentence, words, mask, noise)
    loss = 100 * F.mse_loss(image, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    seconds = time.perf_counter() - t0
    grads = torch.cat([p.grad.flatten() for p in gen.parameters() if p.grad is not None] + [words.grad.flatten()])
    return seconds, grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=200, help="retrieval eval: images (5 captions each)")
    p.add_argument("--batch", type=int, default=64, help="t2i step: captions per batch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--small", action="store_true", help="40 images, batch 16, 1 repeat: a smoke run")
    a = p.parse_args()
    if a.small:
        a.images, a.batch, a.repeats = 40, 16, 1
    a.captions = 5 * a.images
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"threads={torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}; retrieval eval: {a.images} images × "
          f"{a.captions} captions; t2i step: batch {a.batch}; best of {a.repeats}")
    names = ["dot", "additive", "additive (plain)"]
    for label, bench in (("retrieval eval", retrieval_eval), ("t2i step", t2i_step)):
        best: dict[str, float] = {}
        out: dict[str, torch.Tensor] = {}
        for _ in range(a.repeats):  # interleaved, so a load change hits every row alike
            for name in names:
                seconds, out[name] = bench(name, a)
                best[name] = min(best.get(name, float("inf")), seconds)
        print(f"\n{label}")
        for name in names:
            print(f"  {name:18s} {best[name]:8.3f} s   {best[name] / best['dot']:6.2f}× dot")
        new, ref = out["additive"], out["additive (plain)"]
        diff = float((new - ref).abs().max() / ref.abs().max())
        print(f"  additive / dot: {best['additive (plain)'] / best['dot']:.2f} (plain) -> "
              f"{best['additive'] / best['dot']:.2f} (blocked); blocked is "
              f"{best['additive (plain)'] / best['additive']:.1f}× faster; max |blocked - plain| / max |plain| = {diff:.1e}")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
