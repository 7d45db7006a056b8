"""Interpretability of a trained VQA model's attention: grounding and faithfulness.

Every score's map is reduced the same way to attention mass per region
(:func:`~alignbench.metrics.grounding.region_mass`: each map made a distribution over
(word, region) pairs, summed over words, averaged over glimpses). On the first
``examples`` test questions:

* grounding (where the data set knows what a question is about,
  :meth:`grounding_masks`): pointing-game accuracy and attention mass inside the ground
  truth, each beside its chance rate (a random region; uniform attention);
* deletion curves: answer accuracy as regions are hidden (masked out of the attention)
  in order of attention and in random order, at :data:`DELETION_FRACTIONS`; the area
  over the curve of attention order minus that of random order (``aopc_gain`` > 0: the
  attended regions matter more than random ones); the decision-flip rate when the single
  most-attended region is hidden;
* on the first ``costly_examples`` of them: Kendall τ between attention mass and the
  importance of each region by integrated gradients (captum; the predicted answer's
  logit w.r.t. the region features, zero baseline; |sum over the feature dimensions|) and
  by leave-one-out (|change of that logit| when the region is hidden). Magnitudes, since a
  region can matter by raising or by lowering the answer.
"""

from __future__ import annotations

import time

import torch

from ..metrics.grounding import DELETION_FRACTIONS, aopc, kendall_tau, region_cover, region_mass
from ..metrics.vqa import vqa_accuracy
from .protocol import deletion_curves, deletion_orders, grounding_measures, hide_top


def _batches(dataset, indices: list[int], size: int):
    for i in range(0, len(indices), size):
        chunk = indices[i:i + size]
        yield chunk, dataset[chunk]


def _accuracy(model, logits: torch.Tensor, answers: list[list[str]]) -> list[float]:
    return [vqa_accuracy(model.answers[i], a) for i, a in zip(logits.argmax(1).tolist(), answers)]


@torch.no_grad()
def _deletion(model, batch, regions, base_mask, orders) -> dict[str, list[float]]:
    # padded regions (adaptive region features) come last in both orders and are never counted,
    # so each fraction hides that share of every image's real regions in either order
    return deletion_curves(orders, base_mask, lambda keep, _: sum(
        _accuracy(model, model.answer(batch, regions, keep), batch["answers"])))


def _importance(model, batch, regions, base_mask, target: torch.Tensor, ig_steps: int):
    """Integrated-gradients and leave-one-out importance per region, ``[B, R]`` each."""
    from captum.attr import IntegratedGradients

    def target_logit(v, question, question_mask):
        b = {"question": question, "question_mask": question_mask}
        m = None if base_mask is None else base_mask.repeat(v.shape[0] // base_mask.shape[0], 1)
        return model.answer(b, v, m)

    ig = IntegratedGradients(target_logit)
    with torch.enable_grad():
        attr = ig.attribute(regions, baselines=torch.zeros_like(regions), target=target,
                            additional_forward_args=(batch["question"], batch["question_mask"]), n_steps=ig_steps,
                            internal_batch_size=regions.shape[0] * ig_steps)
    ig_importance = attr.sum(-1).detach().abs()
    with torch.no_grad():
        full = model.answer(batch, regions, base_mask).gather(1, target[:, None]).squeeze(1)
        loo = torch.empty(regions.shape[:2])
        for r in range(regions.shape[1]):
            keep = torch.ones(regions.shape[:2], dtype=torch.bool)
            keep[:, r] = False
            mask = keep if base_mask is None else keep & base_mask
            loo[:, r] = (full - model.answer(batch, regions, mask).gather(1, target[:, None]).squeeze(1)).abs()
    return ig_importance, loo


def analyze_vqa(model, datamodule, split: str = "test", examples: int = 500, costly_examples: int = 64,
                ig_steps: int = 16, batch_size: int = 128, seed: int = 0) -> dict:
    """The interpretability measures of ``model`` on ``split`` (see the module docstring).

    Returns ``{"metrics": {...}, "deletion": {...}, "seconds": float}``; metric values are
    percentages except τ (in [-1, 1]).
    """
    if model.fusion is None:
        return {"metrics": {}, "deletion": {}, "seconds": 0.0}
    start = time.perf_counter()
    model.eval()
    dataset = datamodule.splits[split]
    indices = list(range(min(examples, len(dataset))))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    curves = {"attention": [0.0] * len(DELETION_FRACTIONS), "random": [0.0] * len(DELETION_FRACTIONS)}
    taus: dict[str, list[torch.Tensor]] = {"tau_ig": [], "tau_loo": []}
    costly_left = costly_examples

    def add(name: str, values: torch.Tensor) -> None:
        values = values[~torch.isnan(values)]
        sums[name] = sums.get(name, 0.0) + float(values.sum())
        counts[name] = counts.get(name, 0) + len(values)

    generator = torch.Generator().manual_seed(seed)  # one stream for every chunk's random orders
    for chunk, batch in _batches(dataset, indices, batch_size):
        with torch.no_grad():
            regions, base_mask = model.encode_visual(batch)
            logits, weights = model.answer(batch, regions, base_mask, with_attention=True)
        mass = region_mass(weights, model.fusion.normalization, batch["question_mask"]).float()
        if base_mask is not None:
            mass = mass.masked_fill(~base_mask, -1.0)  # padded regions are never "most attended"
        truth = datamodule.grounding_masks(split, chunk)
        grid = int(round(mass.shape[1] ** 0.5))
        if truth is not None and grid * grid == mass.shape[1]:
            cover = region_cover(truth, grid)
            about = cover.sum(1) > 0  # questions about at least one object
            for name, values in grounding_measures(mass[about].clamp_min(0), cover[about]).items():
                add(name, values)
        orders = deletion_orders(mass, generator, base_mask)
        for name, values in _deletion(model, batch, regions, base_mask, orders).items():
            curves[name] = [a + b for a, b in zip(curves[name], values)]
        with torch.no_grad():
            predicted = logits.argmax(1)
            mask = hide_top(orders["attention"], base_mask)  # the top region hidden
            add("flip_rate", (model.answer(batch, regions, mask).argmax(1) != predicted).float() * 100)
        if costly_left > 0:
            k = min(costly_left, len(chunk))
            sub = {key: (v[:k] if torch.is_tensor(v) else v[:k]) for key, v in batch.items()
                   if key in ("question", "question_mask", "answers")}
            ig, loo = _importance(model, sub, regions[:k], None if base_mask is None else base_mask[:k],
                                  predicted[:k], ig_steps)
            taus["tau_ig"].append(kendall_tau(mass[:k], ig))
            taus["tau_loo"].append(kendall_tau(mass[:k], loo))
            costly_left -= k
    n = len(indices)
    curves = {name: [100 * v / n for v in values] for name, values in curves.items()}
    metrics = {f"test/{k}": sums[k] / counts[k] for k in sums if counts[k]}
    metrics["test/aopc_gain"] = aopc(curves["attention"]) - aopc(curves["random"])
    for name, values in taus.items():
        if values:
            tau = torch.cat(values)
            tau = tau[~torch.isnan(tau)]
            if len(tau):
                metrics[f"test/{name}"] = float(tau.mean())
    return {"metrics": metrics, "deletion": {"fractions": list(DELETION_FRACTIONS), **curves,
                                             "examples": n, "costly_examples": costly_examples - costly_left},
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def attention_examples(model, datamodule, split: str = "test"):
    """The first ``model.hparams.attention_examples`` questions of the first test batch for
    the report's side-by-side maps: images, questions (with the first answer), attention
    mass per region, predicted answers and ground-truth masks (None without truth); None
    for a model without attention or data without images."""
    batch = next(iter(datamodule.test_dataloader()))
    if model.fusion is None or "image" not in batch or not hasattr(datamodule, "vocab"):
        return None
    logits, weights, _ = model(batch)
    k = min(model.hparams.attention_examples, len(logits))
    if k < 1:
        return None
    predictions = [model.answers[i] for i in logits.argmax(1).tolist()]
    itos = datamodule.vocab.itos
    texts = [" ".join(itos[t] for t in batch["question"][i][batch["question_mask"][i]].tolist())
             + f" ({batch['answers'][i][0]})" for i in range(k)]
    mass = region_mass(weights[:k], model.fusion.normalization, batch["question_mask"][:k])
    truth = None
    if hasattr(datamodule, "grounding_masks") and "index" in batch:
        truth = datamodule.grounding_masks(split, batch["index"][:k].tolist())
    return batch["image"][batch["image_row"][:k]], texts, mass, predictions[:k], truth
