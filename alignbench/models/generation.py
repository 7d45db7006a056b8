"""AttnGAN-style generator and discriminator (pure torch).

The generator starts from the sentence feature and noise at 4×4, upsamples, and at each
attention stage every image region attends over the caption's words through the
configured score, normalised as the score declares (:func:`~alignbench.attention.score_attention`:
per region over the valid words for row scores, as in AttnGAN; over all region×word pairs
for BAN; co-attention's factorised map); each region reads its word context from its own
conditional distribution over the words (:func:`~alignbench.attention.conditional`), and the
context is joined to the region features.
The discriminator judges images unconditionally and conditioned on the sentence, and has
a word-region matching head (a fixed scaled-dot SCAN matcher, the same for every score)
that scores how well an image's regions match each word.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..attention import attended_sum, conditional, score_attention
from ..scores import ScaledDotScore
from .matching import CrossAttentionMatcher


def masked_mean(words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence feature ``[B, D]``: the mean of the valid word features ``[B, L, D]``."""
    m = mask.to(words.dtype).unsqueeze(-1)
    return (words * m).sum(1) / m.sum(1).clamp_min(1)


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class WordAttentionStage(nn.Module):
    """Regions ``[B, C, H, W]`` attend over ``words [B, L, D]``; returns the refined map and
    the attention ``[B, heads, H·W, L]`` in the score's declared normalisation."""

    def __init__(self, channels: int, word_dim: int, score: nn.Module) -> None:
        super().__init__()
        self.score = score
        self.value = nn.Linear(word_dim, channels)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels))

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, height, width = h.shape
        regions = h.flatten(2).transpose(1, 2)  # [B, HW, C]
        weights = score_attention(self.score, regions, words, key_mask=word_mask)  # [B, H, HW, L]
        reading = conditional(weights, self.score.normalization)  # each region's distribution over words
        context = attended_sum(reading, self.value(words)).mean(1)  # [B, HW, C]
        context = context.transpose(1, 2).reshape(b, c, height, width)
        return F.relu(h + self.fuse(torch.cat([h, context], 1))), weights


class Generator(nn.Module):
    """``(sentence [B, D], words [B, L, D], word_mask, noise [B, Z])`` → image ``[B, 3, S, S]`` in
    [0, 1] and the attention maps of each stage. Attention stages sit at the resolutions in
    ``attention_at`` (each a power of two between 8 and S)."""

    def __init__(self, word_dim: int, score_factory: Callable[[int, int], nn.Module], image_size: int = 32,
                 noise_dim: int = 32, channels: int = 128, attention_at: tuple[int, ...] = (8, 16)) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.start = nn.Sequential(nn.Linear(word_dim + noise_dim, channels * 16), nn.ReLU(inplace=True))
        self.channels = channels
        self.ups, self.stages = nn.ModuleList(), nn.ModuleDict()
        size, c = 4, channels
        while size < image_size:
            self.ups.append(_up(c, max(c // 2, 16)))
            size, c = size * 2, max(c // 2, 16)
            if size in attention_at:
                self.stages[str(size)] = WordAttentionStage(c, word_dim, score_factory(c, word_dim))
        if size != image_size:
            raise ValueError(f"Generator: image_size {image_size} is not 4·2^k")
        if bad := sorted(set(attention_at) - {int(k) for k in self.stages}):
            raise ValueError(f"Generator: attention_at {bad} not among the resolutions 8..{image_size}")
        self.to_rgb = nn.Conv2d(c, 3, 3, padding=1)
        # the declared normalisation of the stage maps (every stage has the same score)
        self.normalization = next(iter(self.stages.values())).score.normalization if len(self.stages) else "row"

    def forward(self, sentence: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.start(torch.cat([sentence, noise], 1)).view(len(sentence), self.channels, 4, 4)
        maps = []
        for up in self.ups:
            h = up(h)
            if str(h.shape[-1]) in self.stages:
                h, weights = self.stages[str(h.shape[-1])](h, words, word_mask)
                maps.append(weights)
        return torch.sigmoid(self.to_rgb(h)), maps


class Discriminator(nn.Module):
    """``image [B, 3, S, S]`` → unconditional logit ``[B]``, conditional logit ``[B]`` (given the
    sentence) and region features ``[B, R, word_dim]`` for the matching head."""

    def __init__(self, word_dim: int, image_size: int = 32, channels: int = 32) -> None:
        super().__init__()
        layers, c_in, c, size = [], 3, channels, image_size
        while size > 4:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_in, c, size = c, c * 2, size // 2
        self.body = nn.Sequential(*layers)
        self.uncond = nn.Conv2d(c_in, 1, 4)
        self.cond = nn.Sequential(nn.Conv2d(c_in + word_dim, c_in, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(c_in, 1, 4))
        self.region = nn.Linear(c_in, word_dim)
        self.matcher = CrossAttentionMatcher(lambda: ScaledDotScore(word_dim, word_dim), aggregation="lse")

    def forward(self, image: torch.Tensor, sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.body(image * 2 - 1)
        s = sentence[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        regions = self.region(h.flatten(2).transpose(1, 2))
        return self.uncond(h).flatten(), self.cond(torch.cat([h, s], 1)).flatten(), regions

    def match_logits(self, regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                     gamma: float = 10.0) -> torch.Tensor:
        """DAMSM-style logits ``[B_img, B_cap]``: γ × word-region similarity of every pair."""
        return gamma * self.matcher(words, word_mask, regions)[0]
