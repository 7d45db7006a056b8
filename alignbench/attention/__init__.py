"""The single place where score logits are masked, normalised and used."""

from .core import attend, attended_sum, masked_softmax, pair_mask, to_joint

__all__ = ["attend", "attended_sum", "masked_softmax", "pair_mask", "to_joint"]
