"""Image-text retrieval task model: SCAN-style cross attention in which only the score changes."""

from __future__ import annotations


import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from ..metrics.entropy import map_entropy
from ..metrics.retrieval import recall_at_k
from .encoders import ConvGridEncoder, RegionEncoder, TextEncoder
from .matching import CrossAttentionMatcher, chunked_similarity
from ..ranges import One, NonNegativeFloat, PositiveFloat, PositiveInt
from ..scores import ScoreFactory

LR_SCHEDULES = ("cosine", "constant")


def hardest_negative_hinge(sims: torch.Tensor, image_row: torch.Tensor, margin: float,
                           hardest: bool = True) -> torch.Tensor:
    """VSE++ hinge loss with the hardest in-batch negatives (``hardest=False``: summed over
    every in-batch negative, the VSE0 loss used to warm up).

    ``sims [U, B]``: similarity of the batch's U distinct images with its B captions;
    ``image_row [B]``: each caption's image. Pairs with the same image are never negatives.
    Returns the sum over captions of both directions' hinge.
    """
    b = sims.shape[1]
    cols = torch.arange(b, device=sims.device)
    positive = sims[image_row, cols]  # [B]
    same_image = image_row[None, :] == torch.arange(sims.shape[0], device=sims.device)[:, None]  # [U, B]
    # caption j as query: every other image; image of caption j as query: captions of other images
    cost_image = (margin + sims - positive[None, :]).clamp_min(0).masked_fill(same_image, 0)  # [U, B]
    caption_sims = sims[image_row]  # [B, B]: image of caption j vs every caption k
    same_pair = image_row[:, None] == image_row[None, :]
    cost_caption = (margin + caption_sims - positive[:, None]).clamp_min(0).masked_fill(same_pair, 0)
    if hardest:
        return cost_image.amax(0).sum() + cost_caption.amax(1).sum()
    return cost_image.sum() + cost_caption.sum()


def merge_eval_parts(parts: list[tuple]) -> tuple:
    """One evaluation set from the encoded batches of every process.

    ``parts``: ``(regions, region_mask, words, caption_mask, caption_image, image_index)``
    per batch. Under multi-process evaluation the parts of all processes are gathered
    first (a distributed sampler may give an image to two processes: each image is kept
    once), so every process scores the same full similarity matrix. Returns ``regions``,
    ``region_mask``, ``words``, ``caption_mask`` and ``caption_image`` with images in split
    order and ``caption_image`` indexing rows of ``regions``.
    """
    device = parts[0][0].device
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, [tuple(None if t is None else t.detach().cpu() for t in p) for p in parts])
        parts = [p for shard in gathered for p in shard]
    images: dict[int, tuple] = {}
    for regions, region_mask, words, caption_mask, caption_image, image_index in parts:
        for u, image in enumerate(image_index.tolist()):
            rows = (caption_image == image).nonzero().squeeze(1)
            images.setdefault(image, (regions[u], None if region_mask is None else region_mask[u],
                                      words[rows], caption_mask[rows]))
    order = sorted(images)
    width = max(int(images[i][3].shape[1]) for i in order)
    pad = nn.functional.pad
    regions = torch.stack([images[i][0] for i in order])
    region_mask = None if images[order[0]][1] is None else torch.stack([images[i][1] for i in order])
    words = torch.cat([pad(images[i][2], (0, 0, 0, width - images[i][2].shape[1])) for i in order])
    caption_mask = torch.cat([pad(images[i][3], (0, width - images[i][3].shape[1])) for i in order])
    caption_image = torch.cat([torch.full((len(images[i][2]),), row, dtype=torch.long) for row, i in enumerate(order)])
    moved = [None if t is None else t.to(device) for t in (regions, region_mask, words, caption_mask)]
    return (*moved, caption_image.to(device))


class RetrievalModule(pl.LightningModule):
    """Caption GRU + visual encoder + :class:`CrossAttentionMatcher` (configured score).

    Trained with :func:`hardest_negative_hinge`: summed over all in-batch negatives for the
    first ``warmup_epochs`` epochs (models trained from scratch collapse to equal
    similarities under hardest negatives alone), hardest negatives after that. Validation and test score every image
    against every caption in chunks and log Recall@K in both directions (percent) and
    the attention entropy.
    """

    def __init__(self, score: ScoreFactory, vocab_size: int, visual: str = "pixels", visual_dim: int | None = None,
                 image_size: int | None = None, hidden_dim: PositiveInt = 128, embed_dim: PositiveInt = 64,
                 channels: tuple[int, ...] = (32, 64), stem: int = 4, scan_treatment: str = "off",
                 temperature: PositiveFloat = 9.0, aggregation: str = "mean", lse_lambda: PositiveFloat = 6.0,
                 margin: NonNegativeFloat = 0.2, warmup_epochs: int = 1, image_chunk: PositiveInt = 20,
                 caption_chunk: PositiveInt = 100, lr: PositiveFloat = 2e-4, lr_schedule: str = "cosine",
                 bidirectional: bool = False, glimpses: One = 1) -> None:
        super().__init__()
        if glimpses != 1:
            raise ValueError(f"RetrievalModule: glimpses must be 1 (one map per word for every score), got {glimpses!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"RetrievalModule: unknown lr_schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        self.save_hyperparameters(ignore=["score"])  # a factory (the config records the score)
        self.text = TextEncoder(vocab_size, embed_dim, hidden_dim, bidirectional=bidirectional)
        if visual == "pixels":
            self.vision: nn.Module = ConvGridEncoder(image_size, hidden_dim, tuple(channels), stem)
        elif visual == "regions":
            self.vision = RegionEncoder(visual_dim, hidden_dim, use_boxes=False)
        else:
            raise ValueError(f"RetrievalModule: unknown visual {visual!r}; valid: pixels, regions")
        self.matcher = CrossAttentionMatcher(
            lambda: score(q_dim=hidden_dim, k_dim=hidden_dim),
            scan_treatment, temperature, aggregation, lse_lambda)
        self._eval: dict[str, list] = {}

    @property
    def score_parameters(self) -> int:
        return sum(p.numel() for p in self.matcher.score.parameters())

    def encode_images(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        if "image" in batch:
            return self.vision(batch["image"]), None
        return self.vision(batch["regions"]), batch.get("region_mask")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        regions, region_mask = self.encode_images(batch)
        words = self.text(batch["caption"])
        sims, _ = self.matcher(words, batch["caption_mask"], regions, region_mask)
        hardest = self.current_epoch >= self.hparams.warmup_epochs
        loss = hardest_negative_hinge(sims, batch["image_row"], self.hparams.margin, hardest)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at step {self.global_step}")
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=sims.shape[1])
        return loss

    def _collect(self, batch: dict, stage: str) -> None:
        """Encode an evaluation batch: images in split order with all their captions."""
        regions, region_mask = self.encode_images(batch)
        self._eval.setdefault(stage, []).append(
            (regions, region_mask, self.text(batch["caption"]), batch["caption_mask"], batch["caption_image"],
             batch["image_index"]))

    def _evaluate(self, stage: str) -> None:
        regions, region_mask, words, caption_mask, caption_image = merge_eval_parts(self._eval.pop(stage, []))
        # epoch-end hooks run outside Lightning's autocast: score in the run's precision (e.g. bf16-mixed) too
        with self.trainer.precision_plugin.forward_context():
            sims = chunked_similarity(self.matcher, words, caption_mask, regions, region_mask,
                                      self.hparams.image_chunk, self.hparams.caption_chunk)
            entropy = self._own_image_entropy(words, caption_mask, regions, region_mask, caption_image)
        values = {f"{stage}/{k}": float(v) for k, v in recall_at_k(sims, caption_image).items()}
        values[f"{stage}/attn_entropy"] = entropy
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()})

    def _own_image_entropy(self, words, caption_mask, regions, region_mask, caption_image, limit: int = 1000) -> float:
        """Mean normalised entropy (percent) of each caption's attention on its own image."""
        ent = []
        for j in range(0, min(len(caption_image), limit), 100):
            idx = torch.arange(j, min(j + 100, len(caption_image), limit))
            img = caption_image[idx]
            rmask = None if region_mask is None else region_mask[img]
            qmask = caption_mask[idx]
            w = self.matcher.pair_attention(words[idx], qmask, regions[img], rmask)
            ent.append(map_entropy(w, self.matcher.normalization, rmask, qmask))
        return float(torch.cat(ent).mean() * 100)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=self.hparams.lr / 100)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
