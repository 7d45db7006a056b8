"""The single place where score logits are masked, normalised and used."""

from .core import attend, attended_sum, conditional, masked_softmax, pair_mask, score_attention, to_joint

__all__ = ["attend", "attended_sum", "conditional", "masked_softmax", "pair_mask", "score_attention", "to_joint"]
