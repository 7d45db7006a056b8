"""Text-to-image task model: an AttnGAN-style GAN in which only the attention score changes.

Losses: hinge adversarial (unconditional + sentence-conditional, with mismatched captions
as conditional fakes; ``adv_weight``), a DAMSM-style word-region matching loss through the
discriminator's fixed matching head (``match_weight``), and a pixel term (``pixel_weight``;
squared error or L1 by ``pixel_loss``; 0 turns it off) that applies only to data whose
images are renders of the captioned scene (``rendered``, set by the data module: the
synthetic scenes, not photographs). On rendered data the first ``pixel_warmup_epochs``
train the generator on the pixel term alone (no discriminator step), and the adversarial
and matching terms join afterwards. Validation and test generate one image
per evaluation caption with fixed noise and judge it with the data set's offline
evaluators (:mod:`alignbench.models.t2i_evaluators`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from .t2i_evaluators import eval_noise_table, load_evaluators
from .encoders import TextEncoder
from .generation import Discriminator, Generator, masked_mean
from .t2i_eval import judge, merge_parts, save_sample_grid, stage_entropy
from ..ranges import One, PositiveFloat, PositiveInt
from ..scores import ScoreFactory


log = logging.getLogger("alignbench")
# the pixel term: squared error learns small objects fast (a mean image shows them early),
# L1 (the median) stays on the background where an object's place is uncertain
PIXEL_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


def matching_loss(logits: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image's caption and each caption's image in ``logits [B, B]``;
    other pairs showing the same source image are left out of the softmax."""
    same = image_index[:, None] == image_index[None, :]
    logits = logits.masked_fill(same & ~torch.eye(len(logits), dtype=torch.bool, device=logits.device), float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


class T2IModule(pl.LightningModule):
    """Caption GRU + :class:`Generator` (configured score at each attention stage) + :class:`Discriminator`."""

    def __init__(self, score: ScoreFactory, vocab_size: int, image_size: int, hidden_dim: PositiveInt = 128,
                 embed_dim: PositiveInt = 64, noise_dim: PositiveInt = 32, g_channels: PositiveInt = 128,
                 d_channels: PositiveInt = 32, attention_at: tuple[int, ...] = (8, 16), lr: PositiveFloat = 1e-3,
                 betas: tuple[float, float] = (0.5, 0.999),
                 adv_weight: float = 1.0, match_weight: float = 1.0, pixel_weight: float = 100.0, pixel_loss: str = "mse",
                 pixel_warmup_epochs: int = 3, rendered: bool = False,
                 gamma: float = 10.0, clip: float | None = 1.0,
                 evaluator_epochs: PositiveInt = 6, grid_examples: int = 12, glimpses: One = 1) -> None:
        super().__init__()
        if glimpses != 1:
            raise ValueError(f"T2IModule: glimpses must be 1 (one map per stage for every score), got {glimpses!r}")
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"T2IModule: pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, got {pixel_loss!r}")
        self.save_hyperparameters(ignore=["score"])  # a factory (the config records the score)
        self.automatic_optimization = False
        self.text = TextEncoder(vocab_size, embed_dim, hidden_dim)
        self.discriminator = Discriminator(hidden_dim, image_size, d_channels)
        self.generator = Generator(hidden_dim, lambda q, k: score(q_dim=q, k_dim=k),
                                   image_size, noise_dim, g_channels, tuple(attention_at))
        self.evaluators: dict = {}  # a plain dict: the evaluators are not part of this model
        self._eval: dict[str, list] = {}
        self._noise: dict[str, torch.Tensor] = {}
        self._judge_cache: dict[str, dict] = {}

    @property
    def score_parameters(self) -> int:
        return sum(p.numel() for s in self.generator.stages.values() for p in s.score.parameters())

    def on_fit_start(self) -> None:
        hp = self.hparams
        epochs = self.trainer.max_epochs or 0
        if not self.gan_active() and 0 < epochs <= hp.pixel_warmup_epochs:
            log.warning("T2IModule: pixel_warmup_epochs=%d >= max_epochs=%d, so the discriminator and the "
                        "adversarial and matching terms never train (set model.pixel_warmup_epochs lower)",
                        hp.pixel_warmup_epochs, self.trainer.max_epochs)

    def setup(self, stage: str) -> None:
        if not self.evaluators:
            self.evaluators = load_evaluators(self.trainer.datamodule, self.hparams.evaluator_epochs)

    def generate(self, caption: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor):
        words = self.text(caption)
        sentence = masked_mean(words, mask)
        image, maps = self.generator(sentence, words, mask, noise)
        return image, maps, words, sentence

    def _step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hparams.clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def gan_active(self) -> bool:
        """Whether this epoch trains the discriminator and the adversarial and matching terms
        (on rendered data they start after ``pixel_warmup_epochs`` of the pixel term alone)."""
        hp = self.hparams
        return not (hp.rendered and hp.pixel_weight > 0 and self.current_epoch < hp.pixel_warmup_epochs)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        caption, mask, real, rows = batch["caption"], batch["caption_mask"], batch["image"], batch["image_index"]
        noise = torch.randn(len(caption), self.hparams.noise_dim, device=real.device)
        fake, _, words, sentence = self.generate(caption, mask, noise)
        d, hp = self.discriminator, self.hparams
        logged: dict[str, torch.Tensor] = {}
        g_loss = fake.new_zeros(())
        if hp.rendered:  # the caption's own image is a render of the scene it describes
            logged["pixel"] = PIXEL_LOSSES[hp.pixel_loss](fake, real)
            g_loss = g_loss + hp.pixel_weight * logged["pixel"]
        if self.gan_active():
            wd, sd = words.detach(), sentence.detach()
            # discriminator: real vs generated, unconditional and conditional; real with a mismatched caption is fake
            u_r, c_r, regions = d(real, sd)
            u_f, c_f, _ = d(fake.detach(), sd)
            wrong = torch.roll(torch.arange(len(rows), device=rows.device), 1)
            _, c_w, _ = d(real, sd[wrong])
            c_w = c_w[rows[wrong] != rows]
            d_adv = (F.relu(1 - u_r).mean() + F.relu(1 - c_r).mean() + F.relu(1 + u_f).mean()
                     + F.relu(1 + c_f).mean() + (F.relu(1 + c_w).mean() if len(c_w) else 0.0))
            d_match = matching_loss(d.match_logits(regions, wd, mask, hp.gamma), rows)
            self._step(opt_d, d_adv + hp.match_weight * d_match)
            # generator (and text encoder): fool both heads and match words
            u_g, c_g, regions_g = d(fake, sd)  # the text encoder learns through the generator, not by fooling D
            g_match = matching_loss(d.match_logits(regions_g, words, mask, hp.gamma), rows)
            g_loss = g_loss - hp.adv_weight * (u_g.mean() + c_g.mean()) + hp.match_weight * g_match
            logged.update(d_loss=d_adv, match=g_match)
        self._step(opt_g, g_loss)
        if not torch.isfinite(g_loss + logged.get("d_loss", 0.0)):
            raise FloatingPointError(f"non-finite GAN loss at step {self.global_step}")
        for name, value in {"g_loss": g_loss, **logged}.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=len(caption))

    def _collect(self, batch: dict, batch_idx: int, stage: str) -> None:
        noise = self._eval_noise(stage)[batch["caption_index"].cpu()].to(self.device)
        fake, maps, _, _ = self.generate(batch["caption"], batch["caption_mask"], noise)
        self._eval.setdefault(stage, []).append({
            "fake": fake, "caption_index": batch["caption_index"],
            "stages": sorted(int(k) for k in self.generator.stages),
            "entropy": stage_entropy(maps, batch["caption_mask"], self.generator.normalization)})

    def _eval_noise(self, stage: str) -> torch.Tensor:
        """Noise ``[C, Z]`` per caption of ``stage``: one fixed table, the same for every score,
        batch size and number of processes."""
        if stage not in self._noise:
            n = len(self.trainer.datamodule.splits[stage].captions)
            self._noise[stage] = eval_noise_table(n, self.hparams.noise_dim, stage)
        return self._noise[stage]

    def _evaluate(self, stage: str) -> None:
        parts = merge_parts(self._eval.pop(stage, []))
        split = self.trainer.datamodule.splits[stage]
        values = judge(parts, split, self.evaluators, real_ceiling=stage == "test", with_fid=stage == "test",
                       cache=self._judge_cache.setdefault(stage, {}))
        # model selection: attribute accuracy where a detector reads the objects, else R-precision
        values["selection"] = values.get("attribute_acc", values.get("r_precision", float("nan")))
        self.log_dict({f"{stage}/{k}": torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()})
        if stage == "test" and self.trainer.is_global_zero:
            save_sample_grid(parts, split, Path(self.trainer.default_root_dir) / "samples.png",
                             self.hparams.grid_examples)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.Adam(list(self.generator.parameters()) + list(self.text.parameters()), hp.lr,
                                 betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), hp.lr, betas=tuple(hp.betas))
        return opt_g, opt_d

