"""The one protocol every task's interpretability analysis follows, and its shared steps.

A task plugs in with a :class:`TaskAnalysis`: two hooks, ``measure`` and ``examples``.
``measure(model, datamodule, split=..., examples=..., costly_examples=..., ig_steps=...,
seed=...)`` runs the protocol on the first ``examples`` test items and returns
``{"metrics": {"test/<name>": value}, "deletion": {...}, "seconds": float}``:

1. grounding: the attention mass of each item over its evidence (regions, or words for
   text-to-image) against what the item is about (:func:`grounding_measures`: pointing game,
   mass on the truth, each beside its chance rate);
2. deletion: the task's score as evidence is hidden in attention order and in random
   order (:func:`deletion_curves`; ``aopc_gain`` from :func:`~alignbench.metrics.grounding.aopc`);
3. flip: how often the decision changes when the single most-attended piece of evidence is
   hidden (:func:`hide_top`);
4. on the first ``costly_examples``: Kendall τ of attention with integrated-gradients and
   leave-one-out importance.

``examples(model, datamodule)`` gives the first test items' attention for the report's
side-by-side maps (:func:`~alignbench.analysis.examples.save_attention_examples`), or None.
The task models know nothing of this: :class:`~alignbench.analysis.callback.InterpretabilityCallback`
calls the hooks after testing, and ``alignbench analyze`` calls them on a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..metrics.grounding import (DELETION_FRACTIONS, area_share, deletion_order, keep_masks, mass_inside,
                                 pointing_chance, pointing_hits)


@dataclass(frozen=True)
class TaskAnalysis:
    """A task's hooks into the protocol (see the module docstring)."""

    measure: Callable[..., dict]
    examples: Callable[..., tuple | None]
    prepare: Callable[..., None] | None = None  # e.g. load a model's offline evaluators before measuring


def grounding_measures(mass: torch.Tensor, cover: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per item, in percent: pointing-game hits and their chance rate (a random region),
    attention mass on the truth and its chance rate (uniform attention); ``mass [N, R]``,
    ``cover [N, R]`` (each region's covered fraction)."""
    return {"pointing_acc": pointing_hits(mass, cover) * 100, "pointing_chance": pointing_chance(cover) * 100,
            "attn_mass_gt": mass_inside(mass, cover) * 100, "attn_mass_chance": area_share(cover) * 100}


def deletion_orders(mass: torch.Tensor, generator: torch.Generator,
                    valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The two orders of hiding, ``[N, R]`` each: most-attended first, and random (drawn from
    ``generator``). Invalid positions (padding) come last in both and are never hidden.
    Positions of equal attention are met in the random order, so attention that ties
    everywhere (``uniform``) hides in the random order: no gain, as it carries no order
    (by index, it would hide whatever is stored first)."""
    random = deletion_order(mass, generator, random=True, valid=valid)
    return {"attention": deletion_order(mass, valid=valid, ties=random), "random": random}


def deletion_curves(orders: dict[str, torch.Tensor], valid: torch.Tensor | None,
                    evaluate: Callable[[torch.Tensor, float], float]) -> dict[str, list[float]]:
    """For each order and each fraction of :data:`DELETION_FRACTIONS`, ``evaluate(keep,
    fraction)`` of the keep mask ``[N, R]`` that hides that share of each item's valid
    positions; returns ``{order: [value per fraction]}``."""
    counts = None if valid is None else valid.sum(1)
    curves: dict[str, list[float]] = {}
    for name, order in orders.items():
        curves[name] = []
        for fraction in DELETION_FRACTIONS:
            keep = keep_masks(order, fraction, counts)
            curves[name].append(evaluate(keep if valid is None else keep & valid, fraction))
    return curves


def hide_top(order: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Keep mask ``[N, R]`` with only each item's most-attended valid position hidden (the
    first of its attention ``order``)."""
    keep = torch.ones(order.shape, dtype=torch.bool) if valid is None else valid.clone()
    keep[torch.arange(len(keep)), order[:, 0]] = False
    return keep
