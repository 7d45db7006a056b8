"""Metrics: official VQA accuracy, Recall@K for image-text retrieval and attention entropy.

Each metric has a pure functional form; those accumulated over a data set also have a
torchmetrics class whose states sum across processes.
"""

from .entropy import attention_entropy, map_entropy
from .grounding import box_iou, phrase_recall_at_k
from .retrieval import recall_at_k, retrieval_ranks
from .vqa import VQAAccuracy, answer_scores, normalize_answer, vqa_accuracy

__all__ = ["attention_entropy", "map_entropy", "vqa_accuracy", "answer_scores", "normalize_answer", "VQAAccuracy",
           "recall_at_k", "retrieval_ranks", "box_iou", "phrase_recall_at_k"]
