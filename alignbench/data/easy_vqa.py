"""easy-VQA: the real third-party data set shipped in the PyPI package ``easy-vqa``.

4,000 train / 1,000 test images (64×64 PNG, one shape on a plain background),
38,575 / 9,673 questions, 13 answers. A validation split of whole images is held out
from train; results are reported on the official test split. Answer types: ``yes/no``,
``color`` and ``shape``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .datasets.text import Vocab
from .datasets.vqa import VQATensors, single_answer_targets
from .base import cached
from .datasets.vqa_module import VQADataModule
from ..ranges import PositiveInt

COLORS = {"red", "green", "blue", "black", "gray", "teal", "brown", "yellow"}
SHAPES = {"circle", "rectangle", "triangle"}


def answer_type(answer: str) -> str:
    if answer in ("yes", "no"):
        return "yes/no"
    return "color" if answer in COLORS else "shape"


def _decode(paths: dict[int, str]) -> tuple[torch.Tensor, dict[int, int]]:
    ids = sorted(paths)
    arrays = []
    for image_id in ids:
        with Image.open(paths[image_id]) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if arr.shape != (64, 64, 3):
            raise ValueError(f"easy-VQA image {paths[image_id]} has shape {arr.shape}, expected (64, 64, 3)")
        arrays.append(arr)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, {image_id: row for row, image_id in enumerate(ids)}


class EasyVQADataModule(VQADataModule):
    """easy-VQA with a held-out validation split of ``val_fraction`` of the train images
    (chosen by ``split_seed``; vocabulary from the remaining train questions)."""

    name = "easy_vqa"

    def __init__(self, val_fraction: float = 0.1, limit: PositiveInt | None = None, split_seed: int = 1234,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.split_seed = split_seed
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"easy_vqa: val_fraction must be in (0, 1), got {val_fraction!r}")
        self.val_fraction, self.limit = val_fraction, limit
        self.image_size = 64

    def _split(self, split: str):
        import easy_vqa

        questions = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
        paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
        images, row_of = cached(f"easy_vqa-{split}", {"v": 1, "n": len(paths)}, lambda: _decode(paths))
        return questions, images, row_of

    def build(self) -> dict[str, VQATensors]:
        import easy_vqa

        self.answers = list(easy_vqa.get_answers())
        self.answer_types = ["yes/no", "color", "shape"]
        (tr_q, tr_a, tr_img), tr_images, tr_rows = self._split("train")
        (te_q, te_a, te_img), te_images, te_rows = self._split("test")
        # the held-out images depend on split_seed only: every run seed sees the same split
        rng = np.random.default_rng(self.split_seed)
        image_ids = np.array(sorted(set(tr_img)))
        val_ids = set(rng.choice(image_ids, size=int(len(image_ids) * self.val_fraction), replace=False).tolist())
        in_val = np.array([i in val_ids for i in tr_img])
        self.vocab = Vocab.build(q for q, v in zip(tr_q, in_val) if not v)
        parts = {
            "train": ([q for q, v in zip(tr_q, in_val) if not v], [a for a, v in zip(tr_a, in_val) if not v],
                      [i for i, v in zip(tr_img, in_val) if not v], tr_images, tr_rows),
            "val": ([q for q, v in zip(tr_q, in_val) if v], [a for a, v in zip(tr_a, in_val) if v],
                    [i for i, v in zip(tr_img, in_val) if v], tr_images, tr_rows),
            "test": (te_q, te_a, te_img, te_images, te_rows),
        }
        splits = {}
        for name, (qs, ans, imgs, images, rows) in parts.items():
            if self.limit is not None:
                qs, ans, imgs = qs[: self.limit], ans[: self.limit], imgs[: self.limit]
            tokens, mask = self.vocab.encode_batch(qs)
            tidx, tscore = single_answer_targets(ans, self.answers)
            splits[name] = VQATensors(
                question=tokens, question_mask=mask,
                image_index=torch.tensor([rows[i] for i in imgs], dtype=torch.long),
                target_index=tidx, target_score=tscore,
                answers=[[a] * 10 for a in ans], answer_type=[answer_type(a) for a in ans],
                num_answers=len(self.answers), images=images,
            )
        return splits

    def grounding_masks(self, split: str, questions: list[int]) -> torch.Tensor:
        """The shape's pixels: every easy-VQA question is about the one shape, drawn on a
        plain background (pixels that differ from the top-left corner's colour)."""
        self.setup()
        data = self.splits[split]
        images = data.images[data.image_index[torch.as_tensor(questions, dtype=torch.long)]].int()
        return (images - images[:, :, :1, :1]).abs().sum(1) > 30
