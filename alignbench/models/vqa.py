"""VQA task model: the shared LightningModule in which only the score changes."""

from __future__ import annotations


import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric

from ..metrics.entropy import map_entropy
from ..metrics.vqa import VQAAccuracy
from .encoders import ConvGridEncoder, RegionEncoder, TextEncoder
from .fusion import GlimpseFusion
from ..ranges import DropoutRate, NonNegativeFloat, PositiveFloat, PositiveInt
from ..scores import ScoreFactory


class VQAModule(pl.LightningModule):
    """Question GRU + visual encoder + glimpse fusion (configured score) + classifier.

    ``score`` is a score factory (a score class, or the partial Hydra builds from
    ``conf/score/``); one module per glimpse is built from it with ``q_dim = k_dim = hidden_dim``. With ``use_image=False`` the
    model never sees the image (question-only baseline). Trained with soft-target BCE
    (scaled by the number of answers, as in BAN). Logs ``train/loss``, ``{val,test}/vqa_acc``
    (+ per answer type) and attention entropy per glimpse, all in percent.
    """

    def __init__(
        self,
        score: ScoreFactory,
        vocab_size: int,
        answers: list[str],
        answer_types: list[str],
        visual: str = "pixels",
        visual_dim: int | None = None,
        image_size: int | None = None,
        hidden_dim: PositiveInt = 128,
        embed_dim: PositiveInt = 64,
        glimpses: PositiveInt = 2,
        channels: tuple[int, ...] = (32, 64),
        stem: int = 4,
        use_image: bool = True,
        dropout: DropoutRate = 0.1,
        lr: PositiveFloat = 1e-3,
        weight_decay: NonNegativeFloat = 0.0,
        attention_examples: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["score"])  # a factory (the config records the score)
        self.answers = list(answers)
        self.text = TextEncoder(vocab_size, embed_dim, hidden_dim, dropout=dropout)
        if visual == "pixels":
            if image_size is None:
                raise ValueError("VQAModule: visual='pixels' needs image_size")
            self.vision: nn.Module = ConvGridEncoder(image_size, hidden_dim, tuple(channels), stem)
        elif visual == "regions":
            if visual_dim is None:
                raise ValueError("VQAModule: visual='regions' needs visual_dim")
            self.vision = RegionEncoder(visual_dim, hidden_dim, dropout=dropout)
        else:
            raise ValueError(f"VQAModule: unknown visual {visual!r}; valid: pixels, regions")
        self.classifier = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * hidden_dim, len(answers))
        )
        # built last: see GlimpseFusion (shared parts initialised before the score)
        self.fusion = (
            GlimpseFusion(lambda: score(q_dim=hidden_dim, k_dim=hidden_dim),
                          hidden_dim, glimpses)
            if use_image else None
        )
        self.metrics = nn.ModuleDict({s: VQAAccuracy(answer_types=list(answer_types)) for s in ("val", "test")})
        n_maps = glimpses if use_image else 0
        self.entropy = nn.ModuleDict({s: nn.ModuleList([MeanMetric() for _ in range(n_maps)]) for s in ("val", "test")})

    @property
    def score_parameters(self) -> int:
        return sum(p.numel() for s in self.fusion.scores for p in s.parameters()) if self.fusion else 0

    def encode_visual(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Region features ``[B, K, h]`` and region mask ``[B, K]`` (None when all valid).

        Each distinct image of the batch is encoded once, then gathered per question.
        """
        rows = batch["image_row"]
        if "image" in batch:
            return self.vision(batch["image"])[rows], None
        boxes = batch.get("boxes")
        if boxes is not None and "image_wh" in batch:
            boxes = boxes / batch["image_wh"].repeat(1, 2)[:, None, :]
        mask = batch.get("region_mask")
        return self.vision(batch["regions"], boxes)[rows], (mask[rows] if mask is not None else None)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Answer logits ``[B, A]``, attention ``[B, G, Lq, Lk]`` (None without image), region mask."""
        if self.fusion is None:
            return self.answer(batch), None, None
        v, v_mask = self.encode_visual(batch)
        logits, weights = self.answer(batch, v, v_mask, with_attention=True)
        return logits, weights, v_mask

    def answer(self, batch: dict, regions: torch.Tensor | None = None, region_mask: torch.Tensor | None = None,
               with_attention: bool = False):
        """Answer logits ``[B, A]`` from the batch's question and given region features
        ``[B, K, h]`` (per question) with ``region_mask [B, K]`` (True = visible). The
        interpretability analyses hide regions through the mask and differentiate with
        respect to ``regions``. With ``with_attention`` also the attention maps."""
        q_mask = batch["question_mask"]
        q = self.text(batch["question"])
        weights = None
        if self.fusion is not None and regions is not None:
            q, weights = self.fusion(q, regions, q_mask, region_mask)
        logits = self.classifier((q * q_mask.unsqueeze(-1).to(q.dtype)).sum(1))
        return (logits, weights) if with_attention else logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits, _, _ = self(batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch["target"]) * logits.shape[1]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at step {self.global_step}")
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=logits.shape[0])
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        logits, weights, v_mask = self(batch)
        predictions = [self.answers[i] for i in logits.argmax(1).tolist()]
        self.metrics[stage].update(predictions, batch["answers"], batch["answer_type"])
        if weights is not None:
            ent = map_entropy(weights, self.fusion.normalization, v_mask, batch["question_mask"])  # [B, G]
            for g, metric in enumerate(self.entropy[stage]):
                metric.update(ent[:, g])

    def _eval_epoch_end(self, stage: str) -> None:
        values = {f"{stage}/{k}": v for k, v in self.metrics[stage].compute().items()}
        self.metrics[stage].reset()
        if len(self.entropy[stage]):
            per_glimpse = [m.compute() * 100 for m in self.entropy[stage]]
            for g, (value, metric) in enumerate(zip(per_glimpse, self.entropy[stage])):
                values[f"{stage}/attn_entropy_g{g}"] = value
                metric.reset()
            values[f"{stage}/attn_entropy"] = torch.stack(per_glimpse).mean()
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()}, sync_dist=False)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
