"""Interpretability analyses of trained runs (grounding, faithfulness).

Every task follows one protocol (:mod:`.protocol`) through its two hooks, registered in
:data:`TASK_ANALYSES` by task name; :class:`.callback.InterpretabilityCallback` runs them
after testing and ``alignbench analyze`` on a checkpoint. A new task plugs in by adding
its :class:`~.protocol.TaskAnalysis` here.
"""

from . import grounding, retrieval, t2i, vqa
from ..metrics.grounding import region_cover
from .protocol import TaskAnalysis
from .retrieval import analyze_retrieval
from .t2i import analyze_t2i
from .vqa import analyze_vqa

TASK_ANALYSES: dict[str, TaskAnalysis] = {
    "vqa": TaskAnalysis(measure=analyze_vqa, examples=vqa.attention_examples),
    "retrieval": TaskAnalysis(measure=analyze_retrieval, examples=retrieval.attention_examples),
    "t2i": TaskAnalysis(measure=analyze_t2i, examples=t2i.attention_examples, prepare=t2i.load_model_evaluators),
    "grounding": TaskAnalysis(measure=grounding.analyze_grounding, examples=grounding.attention_examples),
}

__all__ = ["TASK_ANALYSES", "TaskAnalysis", "analyze_vqa", "analyze_retrieval", "analyze_t2i", "region_cover"]
