"""Cross-attention image-text matching (SCAN text-to-image, pure torch).

Each word attends over the image regions through the configured score and the shared
:func:`~alignbench.attention.score_attention`; the word is compared with its attended
context by cosine and the word relevances are aggregated into one image-caption
similarity. Row, joint and co maps go through the same code: every map is made a
distribution over (word, region) pairs by :func:`~alignbench.attention.to_joint`; a word's
weight is its share of that distribution (uniform for row maps) and its context is the
region average under its conditional distribution (:func:`~alignbench.attention.conditional`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..attention import conditional, score_attention, to_joint
from ..scores import cross_logits

SCAN_TREATMENT = ("off", "on")
AGGREGATIONS = ("mean", "lse")


def scan_raw_treatment(logits: torch.Tensor, query_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """SCAN's treatment of raw scores ``[P, H, Lq, Lk]``: LeakyReLU(0.1), l2 normalisation
    over the valid words of each region, times ``temperature`` (λ₁)."""
    x = F.leaky_relu(logits, 0.1) * query_mask[:, None, :, None].to(logits.dtype)
    return temperature * F.normalize(x, dim=2, eps=1e-8)


class CrossAttentionMatcher(nn.Module):
    """Similarity of every image against every caption by stacked cross attention.

    ``scan_treatment``: ``on`` applies :func:`scan_raw_treatment` to the logits of any
    row-normalised score (an ablation, labelled ``<score>+scan`` in the run record),
    ``off`` (default) never does: a pre-processing of logits applies to every score of a
    comparison or to none. ``aggregation``: ``mean`` (weighted mean of word relevances) or
    ``lse`` (``1/λ₂ · log Σᵢ exp(λ₂ Rᵢ)``, weights folded in).
    """

    def __init__(self, score_factory: Callable[[], nn.Module], scan_treatment: str = "off",
                 temperature: float = 9.0, aggregation: str = "mean", lse_lambda: float = 6.0) -> None:
        super().__init__()
        if scan_treatment not in SCAN_TREATMENT:
            raise ValueError(f"unknown scan_treatment {scan_treatment!r}; valid: {', '.join(SCAN_TREATMENT)}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")
        self.score = score_factory()
        self.normalization = self.score.normalization
        self.treat = scan_treatment == "on"
        if self.treat and self.normalization != "row":
            raise ValueError(f"scan_treatment applies to row-normalised scores, not {type(self.score).__name__} "
                             f"({self.normalization})")
        self.temperature, self.aggregation, self.lse_lambda = temperature, aggregation, lse_lambda

    def attention(self, words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor,
                  region_mask: torch.Tensor | None) -> torch.Tensor:
        """Weights ``[Ni, Nc, H, L, R]`` of every caption (``words [Nc, L, d]``) on every image."""
        ni, nc = regions.shape[0], words.shape[0]
        logits = cross_logits(self.score, words, regions)  # [Ni, Nc, H, L, R]
        logits = logits.reshape(ni * nc, *logits.shape[2:])
        qmask = word_mask.unsqueeze(0).expand(ni, -1, -1).reshape(ni * nc, -1)
        kmask = None if region_mask is None else region_mask.unsqueeze(1).expand(-1, nc, -1).reshape(ni * nc, -1)
        if self.normalization == "co":  # the marginals read the features of each pair
            pair_words = words.unsqueeze(0).expand(ni, *words.shape).reshape(ni * nc, *words.shape[1:])
            pair_regions = regions.unsqueeze(1).expand(ni, nc, *regions.shape[1:]).reshape(ni * nc, *regions.shape[1:])
        else:
            pair_words = pair_regions = None
        weights = self.normalize(logits, qmask, kmask, pair_words, pair_regions)
        return weights.view(ni, nc, *weights.shape[1:])

    def normalize(self, logits: torch.Tensor, word_mask: torch.Tensor, region_mask: torch.Tensor | None,
                  words: torch.Tensor | None = None, regions: torch.Tensor | None = None) -> torch.Tensor:
        """Attention ``[P, H, L, R]`` from score logits of P matched (caption, image) pairs
        (``words [P, L, d]`` and ``regions [P, R, d]``: needed by ``co`` scores only)."""
        if self.treat:
            logits = scan_raw_treatment(logits, word_mask, self.temperature)
        return score_attention(self.score, words, regions, region_mask, word_mask, logits=logits)

    def pair_attention(self, words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor,
                       region_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention ``[P, H, L, R]`` of each caption ``words [P, L, d]`` on its own image ``regions [P, R, d]``."""
        return self.normalize(self.score(words, regions), word_mask, region_mask, words, regions)

    def forward(self, words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor,
                region_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Similarities ``[Ni, Nc]`` and attention ``[Ni, Nc, H, L, R]``."""
        ni, nc = regions.shape[0], words.shape[0]
        weights = self.attention(words, word_mask, regions, region_mask)
        qmask = word_mask.unsqueeze(0).expand(ni, -1, -1).reshape(ni * nc, -1)
        flat = weights.reshape(ni * nc, *weights.shape[2:])
        word_weight = to_joint(flat, self.normalization, qmask).sum(-1).view(ni, nc, *weights.shape[2:-1])
        cond = conditional(flat, self.normalization, qmask).view(weights.shape)  # each word's distribution
        # cos(w_i, c_i) with context c_i = Σ_j cond_ij v_j, without building [Ni, Nc, L, d]:
        # w_i·c_i = Σ_j cond_ij (w_i·v_j) and |c_i|² = cond_i G cond_iᵀ with G = V Vᵀ
        d = words.shape[-1]
        dots = (words.reshape(-1, d) @ regions.reshape(-1, d).T).view(nc, -1, ni, regions.shape[1])
        dots = dots.permute(2, 0, 1, 3).unsqueeze(2)  # [Ni, Nc, 1, L, R]
        gram = regions @ regions.transpose(1, 2)  # [Ni, R, R]
        w_dot_c = (cond * dots).sum(-1)
        cond_gram = (cond.reshape(ni, -1, cond.shape[-1]) @ gram).view(cond.shape)  # one matmul per image
        c_norm = (cond_gram * cond).sum(-1).clamp_min(1e-16).sqrt()  # clamped: finite gradient at 0
        w_norm = words.norm(dim=-1)[None, :, None, :]  # [1, Nc, 1, L]
        relevance = w_dot_c / (c_norm * w_norm).clamp_min(1e-8)  # [Ni, Nc, H, L]
        if self.aggregation == "mean":
            sims = (word_weight * relevance).sum(-1)
        else:
            n_words = word_mask.sum(1).to(relevance.dtype)[None, :, None, None]
            w = (word_weight * n_words).clamp_min(1e-30)  # uniform weights give SCAN's plain LSE
            valid = word_weight > 0
            z = torch.where(valid, self.lse_lambda * relevance + torch.log(w), torch.full_like(w, float("-inf")))
            sims = torch.logsumexp(z, dim=-1) / self.lse_lambda
        return sims.mean(-1), weights


def chunked_similarity(matcher: CrossAttentionMatcher, words: torch.Tensor, word_mask: torch.Tensor,
                       regions: torch.Tensor, region_mask: torch.Tensor | None = None,
                       image_chunk: int = 20, caption_chunk: int = 100) -> torch.Tensor:
    """All image-caption similarities ``[Ni, Nc]``, computed block by block.

    Memory is bounded by ``image_chunk × caption_chunk`` pairs at a time (small blocks keep
    the temporaries in cache, which is faster on CPUs too); captions are taken in order of
    length so each block is padded only to its own longest caption. Each score prepares
    every sequence once per block (see :func:`~alignbench.scores.cross_logits`).
    """
    ni, nc = regions.shape[0], words.shape[0]
    sims = torch.empty(ni, nc, dtype=torch.float32, device=regions.device)
    order = torch.argsort(word_mask.sum(1), stable=True)
    for j in range(0, nc, caption_chunk):
        idx = order[j:j + caption_chunk]
        wm = word_mask[idx]
        width = int(wm.sum(1).max())
        w, wm = words[idx, :width], wm[:, :width]
        for i in range(0, ni, image_chunk):
            r = regions[i:i + image_chunk]
            rm = None if region_mask is None else region_mask[i:i + image_chunk]
            sims[i:i + image_chunk, idx] = matcher(w, wm, r, rm)[0].float()
    return sims
