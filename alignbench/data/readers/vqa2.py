"""Readers for the official VQA v2 question and annotation files.

Pure numpy / plain Python; nothing here builds tensors or batches.

- :func:`find_vqa2_files`, :func:`read_vqa2_split`: the official question and
  annotation JSON files, one example dict per question.
- region features (:func:`open_region_features` and friends) live in
  :mod:`alignbench.data.readers.vqa2_regions` and are re-exported here.
- :func:`build_answer_vocab`: the answer vocabulary of a training split.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .vqa2_regions import (  # noqa: F401 - re-exported
    REGION_LAYOUTS, TSV_COLUMNS, H5RegionFeatures, NpzDirRegionFeatures, RegionFeatureFormatError, RegionFeatures,
    RegionFeatureStore, TsvRegionFeatures, open_region_features,
)


QUESTIONS_FILE = "v2_OpenEnded_mscoco_{split}_questions.json"
ANNOTATIONS_FILE = "v2_mscoco_{split}_annotations.json"
VQA2_SPLITS = ("train2014", "val2014", "test2015", "test-dev2015")
ANNOTATED_SPLITS = ("train2014", "val2014")
PathLike = str | os.PathLike


def _load_json(path: Path, key: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
    return data


def find_vqa2_files(root: PathLike, split: str) -> tuple[Path, Path | None]:
    """Paths of the official question and annotation files of ``split`` under ``root``.

    Looks in ``root`` itself, then ``root/Questions`` / ``root/Annotations`` (the official
    API layout) and their lower-case forms. Test splits (``test2015``, ``test-dev2015``)
    have no annotations, so the second path is None. Raises FileNotFoundError naming the
    missing file.
    """
    if split not in VQA2_SPLITS:
        raise ValueError(f"unknown VQA v2 split {split!r}; expected one of {VQA2_SPLITS}")
    base = Path(root)

    def locate(name: str, sub: str) -> Path:
        for candidate in (base / name, base / sub / name, base / sub.lower() / name):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"VQA v2 {split}: missing {base / name} (also looked in {base / sub}, {base / sub.lower()})"
        )

    questions = locate(QUESTIONS_FILE.format(split=split), "Questions")
    if split not in ANNOTATED_SPLITS:
        return questions, None
    return questions, locate(ANNOTATIONS_FILE.format(split=split), "Annotations")


def read_vqa2_split(questions_path: PathLike, annotations_path: PathLike | None = None) -> list[dict[str, Any]]:
    """One dict per question, in the order of the questions file.

    Keys: ``question_id`` int, ``image_id`` int, ``question`` str, ``answers`` list of the
    human answer strings (10 in VQA v2) sorted by ``answer_id``, ``answer_type`` str
    ("yes/no", "number", "other"). Without ``annotations_path`` (test splits) ``answers``
    is [] and ``answer_type`` None. Malformed files raise ValueError naming the file.
    """
    qpath = Path(questions_path)
    qdata = _load_json(qpath, "questions")
    anns: dict[int, dict] | None = None
    if annotations_path is not None:
        apath = Path(annotations_path)
        adata = _load_json(apath, "annotations")
        qsub, asub = qdata.get("data_subtype"), adata.get("data_subtype")
        if qsub and asub and qsub != asub:
            raise ValueError(f"{qpath} is split {qsub!r} but {apath} is split {asub!r}")
        try:
            anns = {int(a["question_id"]): a for a in adata["annotations"]}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{apath}: an annotation has no integer question_id ({e!r})") from e
    examples = []
    for q in qdata["questions"]:
        try:
            ex = {"question_id": int(q["question_id"]), "image_id": int(q["image_id"]),
                  "question": str(q["question"]), "answers": [], "answer_type": None}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{qpath}: malformed question entry {str(q)[:200]} ({e!r})") from e
        if anns is not None:
            qid = ex["question_id"]
            if qid not in anns:
                raise ValueError(f"{apath}: no annotation for question_id {qid} of {qpath}")
            try:
                ann = anns[qid]
                if int(ann["image_id"]) != ex["image_id"]:
                    raise ValueError(f"image_id {ann['image_id']} != {ex['image_id']} in {qpath}")
                ex["answers"] = [str(a["answer"]) for a in sorted(ann["answers"], key=lambda a: a["answer_id"])]
                ex["answer_type"] = str(ann["answer_type"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{apath}: malformed annotation of question_id {qid} ({e})") from e
        examples.append(ex)
    return examples


def build_answer_vocab(examples: Iterable[Mapping[str, Any]], min_count: int = 9) -> list[str]:
    """Answer vocabulary: answers given for at least ``min_count`` questions.

    Each example contributes the candidate answers of its soft target, i.e. the keys of
    :func:`alignbench.metrics.vqa.answer_scores` of its human ``answers`` (processed as
    the official metric processes them), once per question. Answers with count >=
    ``min_count`` are returned, most frequent first, ties in alphabetical order.
    """
    from ...metrics.vqa import answer_scores

    if min_count < 1:
        raise ValueError(f"build_answer_vocab: min_count must be >= 1, got {min_count}")
    counts: Counter[str] = Counter()
    for ex in examples:
        counts.update(answer_scores(ex["answers"]).keys())
    return sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
