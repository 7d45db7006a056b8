"""Phrase grounding task model: a phrase's words attend over the image's regions through the
configured score, and that attention is the localisation. Only the score changes.

The caption is read by a bidirectional GRU (each word in its context); the regions are
projected from their features and normalised boxes (:class:`RegionEncoder` and one more
layer). The phrase's words are the queries of :func:`~alignbench.attention.score_attention`
(the other words are masked out as queries, never as context), the regions its keys, in the
normalisation the score declares; the phrase's distribution over regions is that map as a
distribution over (word, region) pairs summed over its words and averaged over maps
(:func:`~alignbench.metrics.grounding.region_mass`), the same reduction every task uses.

Trained as BAN's grounding head is, with supervision from the boxes: the regions whose IoU
with one of the phrase's boxes is at least ``iou_threshold`` are its targets, and the loss is
the negative log of the attention mass on them (a phrase with no such region has no loss).
Logs ``{val,test}/phrase_r1``, ``phrase_r5``, ``phrase_r10``, ``phrase_upper_bound``
(:func:`~alignbench.metrics.grounding.phrase_recall_at_k`, percent) and ``attn_entropy``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from ..attention import score_attention
from ..metrics.entropy import map_entropy
from ..metrics.grounding import box_iou, phrase_recall_at_k, region_mass
from ..ranges import DropoutRate, One, PositiveFloat, PositiveInt
from ..scores import ScoreFactory
from .encoders import RegionEncoder, TextEncoder

RECALL = ("r1", "r5", "r10", "upper_bound")


def target_regions(region_boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_count: torch.Tensor,
                   region_mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool ``[P, R]``: valid regions whose IoU with one of the phrase's first ``gt_count``
    boxes (of ``gt_boxes [P, G, 4]``) is at least ``threshold``."""
    iou = box_iou(region_boxes, gt_boxes)  # [P, R, G]
    real = torch.arange(gt_boxes.shape[1], device=gt_boxes.device)[None, :] < gt_count[:, None]  # [P, G]
    return ((iou >= threshold) & real[:, None, :]).any(-1) & region_mask


class GroundingModule(pl.LightningModule):
    """Caption GRU + region encoder + the configured score; see the module docstring."""

    def __init__(self, score: ScoreFactory, vocab_size: int, visual_dim: int, hidden_dim: PositiveInt = 128,
                 embed_dim: PositiveInt = 64, dropout: DropoutRate = 0.1, lr: PositiveFloat = 1e-3,
                 iou_threshold: PositiveFloat = 0.5, glimpses: One = 1) -> None:
        super().__init__()
        if glimpses != 1:
            raise ValueError(f"GroundingModule: glimpses must be 1 (one map per phrase for every score), got {glimpses!r}")
        self.save_hyperparameters(ignore=["score"])  # a factory (the config records the score)
        self.text = TextEncoder(vocab_size, embed_dim, hidden_dim, bidirectional=True)
        self.regions = RegionEncoder(visual_dim, hidden_dim, use_boxes=True, dropout=dropout)
        self.region_mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.score = score(q_dim=hidden_dim, k_dim=hidden_dim)  # built last: the shared parts are initialised first
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({k: MeanMetric() for k in (*RECALL, "attn_entropy")})
                                      for stage in ("val", "test")})

    @property
    def score_parameters(self) -> int:
        return sum(p.numel() for p in self.score.parameters())

    def localise(self, batch: dict, region_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each phrase's distribution over its image's regions ``[P, R]`` and the attention maps
        ``[P, H, L, R]``; ``region_mask`` (default: the batch's) hides regions."""
        mask = batch["region_mask"] if region_mask is None else region_mask
        words = self.text(batch["caption"])
        regions = self.region_mlp(self.regions(batch["regions"], batch["region_boxes_norm"]))
        weights = score_attention(self.score, words, regions, key_mask=mask, query_mask=batch["phrase_words"])
        return region_mass(weights, self.score.normalization, batch["phrase_words"]), weights

    def _targets(self, batch: dict) -> torch.Tensor:
        return target_regions(batch["region_boxes"], batch["gt_boxes"], batch["gt_count"], batch["region_mask"],
                              self.hparams.iou_threshold)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        where, _ = self.localise(batch)
        targets = self._targets(batch)
        has = targets.any(1)  # phrases with a region over the threshold
        mass = (where * targets).sum(1)[has]
        loss = -torch.log(mass.clamp_min(1e-6)).mean() if has.any() else where.sum() * 0.0
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at step {self.global_step}")
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(where))
        # the uniform control's localisation depends on no parameter: there is nothing to learn (no step)
        return loss if loss.requires_grad else None

    def _eval_step(self, batch: dict, stage: str) -> None:
        where, weights = self.localise(batch)
        gt = [boxes[:n] for boxes, n in zip(batch["gt_boxes"], batch["gt_count"].tolist())]
        ties = torch.Generator().manual_seed(int(batch["phrase_index"][0]))  # the same draw for every score
        recall = phrase_recall_at_k(where, batch["region_boxes"], gt, iou_threshold=self.hparams.iou_threshold,
                                    region_mask=batch["region_mask"], generator=ties)
        metrics = self.metrics[stage]
        for key in RECALL:
            metrics[key].update(torch.tensor(recall[key], device=self.device), weight=len(where))
        entropy = map_entropy(weights, self.score.normalization, batch["region_mask"], batch["phrase_words"])
        metrics["attn_entropy"].update(entropy.mean(1) * 100)

    def _eval_epoch_end(self, stage: str) -> None:
        values = {}
        for key, metric in self.metrics[stage].items():
            values[f"{stage}/{key if key == 'attn_entropy' else 'phrase_' + key}"] = metric.compute()
            metric.reset()
        self.log_dict(values)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
