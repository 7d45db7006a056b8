"""Offline evaluators for text-to-image: trained once per data set on real images, cached.

Every generator of a comparison is judged by the same two networks, which are never part
of a generator's training losses:

* :class:`MatchingEvaluator`: a dual encoder (CNN image embedding, GRU caption embedding)
  trained contrastively on real image-caption pairs; gives R-precision and the features
  of the Fréchet distance.
* :class:`GridDetector` (synthetic scenes only): reads, per grid cell, whether an object's
  centre lies there and its colour and shape; gives the attribute accuracy.

Both are trained with mild blur, brightness and noise corruptions (:func:`augment`), so a
recognisable but imperfect drawing is still read; their reading of the real images is
reported beside every run as the ceiling.

:func:`load_evaluators` trains them on the train split of a data module, or loads them
from the cache (keyed by a hash of the data, the evaluator settings and this code).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..data.base import cached
from ..data.generator.captions import EDGE
from ..data.generator.scenes import COLOUR_NAMES, SHAPES
from ..data.datasets.t2i import T2IDataModule, T2ITensors
from .encoders import TextEncoder

log = logging.getLogger("alignbench")
CELL = 8  # detector grid cell in pixels

EVAL_NOISE_SEED = 20_181_010


def eval_noise_table(n_captions: int, noise_dim: int, stage: str) -> torch.Tensor:
    """The fixed evaluation noise ``[C, Z]`` of a split's captions: one table, the same for
    every score, batch size and number of processes."""
    g = torch.Generator().manual_seed(EVAL_NOISE_SEED + (stage == "test"))
    return torch.randn(n_captions, noise_dim, generator=g)


def _conv_stack(channels: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in zip((3,) + channels[:-1], channels):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


class GridDetector(nn.Module):
    """``image [B, 3, S, S]`` in [0, 1] → objectness logits ``[B, G, G]``, colour logits
    ``[B, G, G, C]`` and shape logits ``[B, G, G, S]`` on a grid of ``CELL``-pixel cells."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = _conv_stack((width, 2 * width, 2 * width))  # stride 8 = CELL
        self.mix = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(2 * width, 1 + len(COLOUR_NAMES) + len(SHAPES), 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.head(self.mix(self.body(image))).permute(0, 2, 3, 1)
        c = len(COLOUR_NAMES)
        return out[..., 0], out[..., 1:1 + c], out[..., 1 + c:]


class MatchingEvaluator(nn.Module):
    """Image and caption embeddings ``[B, dim]`` (unit length) for R-precision and FID-feat."""

    def __init__(self, vocab_size: int, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.image_body = _conv_stack((width, 2 * width, 4 * width))
        self.image_head = nn.Linear(4 * width, dim)
        self.text = TextEncoder(vocab_size, 64, dim)
        self.scale = nn.Parameter(torch.tensor(10.0))

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Pooled CNN features ``[B, 4·width]`` (the features of the Fréchet distance)."""
        return self.image_body(image).mean((2, 3))

    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_head(self.image_features(image)), dim=-1)

    def embed_caption(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        words = self.text(tokens)
        last = mask.sum(1).clamp_min(1) - 1
        return F.normalize(words[torch.arange(len(words)), last], dim=-1)


def object_targets(objects: dict[str, torch.Tensor], rows: torch.Tensor, grid: int) -> tuple[torch.Tensor, ...]:
    """Detector targets ``[B, G, G]``: object present, colour and shape (-1 where none)."""
    centre, colour, shape = objects["centre"][rows], objects["colour"][rows], objects["shape"][rows]
    present = torch.zeros(len(rows), grid, grid)
    col_t = torch.full((len(rows), grid, grid), -1, dtype=torch.long)
    shp_t = col_t.clone()
    cell = (centre / CELL).long().clamp(0, grid - 1)
    for k in range(colour.shape[1]):  # later objects win a shared cell, as in the drawing
        b = (colour[:, k] >= 0).nonzero().squeeze(1)
        y, x = cell[b, k, 1], cell[b, k, 0]
        present[b, y, x] = 1
        col_t[b, y, x], shp_t[b, y, x] = colour[b, k], shape[b, k]
    return present, col_t, shp_t


def location_cells(location: str | None, grid: int, image_size: int) -> torch.Tensor:
    """Bool ``[G, G]``: cells that overlap the band of a location phrase (all for None)."""
    cells = torch.ones(grid, grid, dtype=torch.bool)
    if location is None:
        return cells
    lo = torch.arange(grid) * CELL  # cell start, pixels
    hi = lo + CELL
    edge_lo, edge_hi = EDGE * image_size, (1 - EDGE) * image_size
    band = {"left": lo <= edge_lo, "right": hi >= edge_hi, "top": lo <= edge_lo, "bottom": hi >= edge_hi}
    for word in location.split():
        along = band[word]
        cells &= along[None, :] if word in ("left", "right") else along[:, None]
    return cells


def augment(images: torch.Tensor) -> torch.Tensor:
    """Mild, label-preserving corruption of ``images [B, 3, S, S]`` in [0, 1] for training the
    evaluators: half the images blurred (3×3 box), brightness ×[0.9, 1.1] and pixel noise of
    up to σ = 0.05, so that the evaluators read a recognisable but imperfect drawing."""
    b = len(images)
    blur = torch.rand(b, 1, 1, 1) < 0.5
    x = torch.where(blur, F.avg_pool2d(images, 3, 1, 1, count_include_pad=False), images)
    x = x * (0.9 + 0.2 * torch.rand(b, 1, 1, 1)) + 0.05 * torch.rand(b, 1, 1, 1) * torch.randn_like(x)
    return x.clamp(0, 1)


def _train(model: nn.Module, step, n_items: int, epochs: int, batch_size: int, lr: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for ids in torch.randperm(n_items, generator=g).split(batch_size):
            loss = step(ids)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def train_detector(split: T2ITensors, epochs: int = 6, seed: int = 0) -> GridDetector:
    torch.manual_seed(seed)
    model, grid = GridDetector(), split.image_size // CELL

    def step(rows: torch.Tensor) -> torch.Tensor:
        obj, col, shp = model(augment(split.images[rows].float() / 255))
        present, col_t, shp_t = object_targets(split.objects, rows, grid)
        return (F.binary_cross_entropy_with_logits(obj, present) + F.cross_entropy(col.flatten(0, 2), col_t.flatten(),
                ignore_index=-1) + F.cross_entropy(shp.flatten(0, 2), shp_t.flatten(), ignore_index=-1))

    _train(model, step, len(split.images), epochs, 64, 2e-3, seed)
    return model


def train_matcher(split: T2ITensors, vocab_size: int, epochs: int = 6, seed: int = 0) -> MatchingEvaluator:
    torch.manual_seed(seed)
    model = MatchingEvaluator(vocab_size)

    def step(ids: torch.Tensor) -> torch.Tensor:
        batch = split.batch(ids.tolist())
        img = model.embed_image(augment(batch["image"]))
        cap = model.embed_caption(batch["caption"], batch["caption_mask"])
        logits = model.scale * img @ cap.T
        same = batch["image_index"][:, None] == batch["image_index"][None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(ids), dtype=torch.bool), float("-inf"))
        target = torch.arange(len(ids))
        return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)

    _train(model, step, len(split.captions), epochs, 128, 2e-3, seed)
    return model


def load_evaluators(datamodule: T2IDataModule, epochs: int = 6, seed: int = 0) -> dict[str, nn.Module]:
    """The data set's evaluators (``matcher`` and, when objects are known, ``detector``)."""
    datamodule.setup()
    train = datamodule.splits["train"]
    digest = hashlib.sha256()
    for tensor in (train.captions, train.images[:: max(1, len(train.images) // 64)]):
        digest.update(tensor.numpy().tobytes())
    for code in (Path(__file__), Path(__file__).parent / "encoders.py"):
        digest.update(code.read_bytes())
    key = {"data": digest.hexdigest(), "n": len(train.captions), "vocab": len(datamodule.vocab),
           "epochs": epochs, "seed": seed}

    def build() -> dict[str, dict]:
        log.info("training the text-to-image evaluators (once per data set; cached)")
        with torch.random.fork_rng():  # the run's own random stream is left as it was
            states = {"matcher": train_matcher(train, len(datamodule.vocab), epochs, seed).state_dict()}
            if train.objects is not None:
                states["detector"] = train_detector(train, epochs, seed).state_dict()
        return states

    states = cached(f"t2i-evaluators-{datamodule.name}", key, build)
    models: dict[str, nn.Module] = {"matcher": MatchingEvaluator(len(datamodule.vocab))}
    if "detector" in states:
        models["detector"] = GridDetector()
    for name, model in models.items():
        model.load_state_dict(states[name])
        model.eval().requires_grad_(False)
    return models
