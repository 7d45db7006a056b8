"""What every data module shares: the on-disk tensor cache and the split-building base."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from ..files import write_atomic
from ..ranges import PositiveInt


def cache_dir() -> Path:
    """Where decoded images are cached: ``$ALIGNBENCH_CACHE`` or ``~/.cache/alignbench``."""
    return Path(os.environ.get("ALIGNBENCH_CACHE", Path.home() / ".cache" / "alignbench")).expanduser()


def _data_code_version() -> str:
    """Hash of the data package's source, so a change to a generator or reader never
    returns data cached by the old code."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):  # the subpackages too (generator, readers, datasets)
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached(name: str, key: dict, build: Callable[[], Any]) -> Any:
    """Return ``build()``, cached on disk under ``name`` and a hash of ``key``.

    The key also holds a hash of the data package's source code. The cache file is
    written atomically; a corrupt cache file is rebuilt.
    """
    key = {**key, "code": _data_code_version()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{digest}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            path.unlink(missing_ok=True)
    value = build()
    write_atomic(path, lambda tmp: torch.save(value, tmp))
    return value


class RankShard(Sampler[list[int]]):
    """This process's share of the batches of ``batches``.

    Every process walks the same (seeded) batch order, so the shares are disjoint and
    together hold every example exactly once: evaluation metrics reduced across
    processes equal the single-process ones. Training (``even``): batch i goes to process
    ``i mod world_size`` and every process gets the same number of batches (the last
    ``len mod world_size`` are left out), as DDP's gradient reduction needs. Evaluation:
    every batch is cut into ``world_size`` contiguous parts and process r takes part r,
    so each process has work even when there are fewer batches than processes.
    Outside a process group it yields every batch unchanged.
    """

    def __init__(self, batches: Sampler[list[int]], even: bool) -> None:
        self.batches, self.even = batches, even

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _parts(self, rank: int, world: int):
        for batch in self.batches:
            size = -(-len(batch) // world)
            part = list(batch)[rank * size:(rank + 1) * size]
            if part:
                yield part

    def __iter__(self):
        rank, world = self._rank_world()
        if world == 1:
            yield from self.batches
        elif self.even:
            limit = len(self) * world
            for i, batch in enumerate(self.batches):
                if i >= limit:
                    break
                if i % world == rank:
                    yield batch
        else:
            yield from self._parts(rank, world)

    def __len__(self) -> int:
        rank, world = self._rank_world()
        if world == 1:
            return len(self.batches)
        if self.even:
            return len(self.batches) // world
        return sum(1 for _ in self._parts(rank, world))  # evaluation orders are fixed: cheap to walk


def batch_loader_of(dataset: Any, batches: Sampler[list[int]], train: bool) -> DataLoader:
    """A loader of whole batches (``dataset[list_of_indices]``), sharded across processes
    by :class:`RankShard` (the trainers set ``use_distributed_sampler: false``)."""
    return DataLoader(dataset, sampler=RankShard(batches, even=train), batch_size=None)


class SplitDataModule(pl.LightningDataModule):
    """Builds its train/val/test splits once (:meth:`build`) and knows its batch sizes."""

    def __init__(self, batch_size: PositiveInt, eval_batch_size: PositiveInt, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.splits: dict[str, Any] = {}
        self.vocab = None
        self.visual = "pixels"
        self.visual_dim: int | None = None
        self.image_size: int | None = None

    def build(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.build()

    def sizes(self) -> dict[str, int]:
        """Examples per split (captions or questions)."""
        self.setup()
        return {split: len(data) for split, data in self.splits.items()}

    def _loader(self, split: str, train: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
