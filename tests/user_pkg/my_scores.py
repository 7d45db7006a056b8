"""A score function that lives outside alignbench, as a user's own package would."""

import torch

from alignbench.scores import AlignmentScore


class NegSquaredDistanceScore(AlignmentScore):
    """``-||W q - k||² / d``; logits ``[B, 1, Lq, Lk]``."""

    normalization = "row"

    def __init__(self, q_dim: int, k_dim: int, scale: float = 1.0) -> None:
        super().__init__(q_dim, k_dim)
        self.proj = torch.nn.Linear(q_dim, k_dim, bias=False)
        self.scale = scale

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(self.proj(query), key).pow(2)
        return (-self.scale * dist / self.k_dim).unsqueeze(1)


class NaNScore(AlignmentScore):
    """A broken score whose logits are NaN: runs with it must fail cleanly."""

    def __init__(self, q_dim: int, k_dim: int) -> None:
        super().__init__(q_dim, k_dim)
        self.proj = torch.nn.Linear(q_dim, k_dim, bias=False)

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return (self.proj(query) @ key.transpose(1, 2) * float("nan")).unsqueeze(1)
