"""Encoders shared by the task models (pure torch)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TextEncoder(nn.Module):
    """Word embedding + GRU.

    ``tokens [B, L]`` (0 = padding) → word features ``[B, L, hidden_dim]``. Padding is at
    the end, so a forward GRU's states at valid positions never see it. With
    ``bidirectional=True`` (SCAN's caption encoder) each word is the mean of the forward
    and backward states; sequences are packed so the backward pass starts at each
    caption's last valid word, and padded positions are zero.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, dropout: float = 0.0,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.bidirectional = bidirectional

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embedding(tokens))
        if not self.bidirectional:
            return self.gru(x)[0]
        lengths = (tokens != 0).sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=tokens.shape[1])
        return (out[..., : self.gru.hidden_size] + out[..., self.gru.hidden_size:]) / 2


class ConvGridEncoder(nn.Module):
    """Small CNN over pixels → a grid of region features with their coordinates.

    ``image [B, 3, S, S]`` → ``[B, G*G, hidden_dim]`` (row-major cells). The first layer
    is a ``stem×stem`` patch convolution with stride ``stem``; every further channel
    count adds a 3×3 stride-2 convolution, so ``G = S / (stem · 2**(len(channels)-1))``.
    Each cell's normalised centre (x, y) is appended before the last 1×1 projection so
    that position is part of every region feature.
    """

    def __init__(self, image_size: int, hidden_dim: int, channels: tuple[int, ...] = (32, 64),
                 stem: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(channels):
            conv = nn.Conv2d(c_in, c_out, stem, stride=stem) if i == 0 else nn.Conv2d(c_in, c_out, 3, 2, padding=1)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        stride = stem * 2 ** (len(channels) - 1)
        self.grid = image_size // stride
        if self.grid < 1 or image_size % stride:
            raise ValueError(f"ConvGridEncoder: image_size {image_size} is not divisible by the total stride {stride}")
        centres = (torch.arange(self.grid).float() + 0.5) / self.grid * 2 - 1
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys]).unsqueeze(0), persistent=False)
        self.head = nn.Conv2d(c_in + 2, hidden_dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feat = self.body(image)
        feat = torch.cat([feat, self.coords.expand(feat.shape[0], -1, -1, -1).to(feat.dtype)], dim=1)
        return F.relu(self.head(feat)).flatten(2).transpose(1, 2)


class RegionEncoder(nn.Module):
    """Projection of precomputed region features (bottom-up style).

    ``regions [B, K, D]`` (+ optional ``boxes [B, K, 4]`` normalised to [0, 1]) →
    ``[B, K, hidden_dim]``.
    """

    def __init__(self, feature_dim: int, hidden_dim: int, use_boxes: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.use_boxes = use_boxes
        self.proj = nn.Linear(feature_dim + (4 if use_boxes else 0), hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, regions: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        x = regions
        if self.use_boxes:
            if boxes is None:
                raise ValueError("RegionEncoder: use_boxes=True needs boxes [B, K, 4]")
            x = torch.cat([x, boxes.to(x.dtype)], dim=-1)
        return F.relu(self.proj(self.dropout(x)))
