"""The official VQA accuracy metric (VQA v2), with its answer normalisation.

alignbench scores open-ended answers exactly as the official VQA evaluation
(``vqaEval.py`` of the VQA API, by Aishwarya Agrawal) does:

* prediction and human answers: ``'\\n'`` and ``'\\t'`` become spaces, then strip;
* only when the human answers are not all identical, the answers *and* the
  prediction go through :func:`process_punctuation` then :func:`process_digit_article`;
* accuracy is the mean, over the ``n`` leave-one-out subsets of the human answers
  (each answer removed once, by position), of ``min(1, #matches / 3)``.

With fewer than 4 answers the leave-one-out subsets hold at most 2 answers, so the
score never reaches 1: a single-answer dataset should repeat its answer (10 times,
as VQA has 10 answers) to make the metric an exact match.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import Metric

__all__ = [
    "ARTICLES", "CONTRACTIONS", "MANUAL_MAP", "PUNCT", "VQAAccuracy", "answer_scores",
    "normalize_answer", "prepare", "process_digit_article", "process_punctuation", "vqa_accuracy",
]

# Number words mapped to digits (whole lowercase words only).
MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})
# Punctuation handled one character at a time. The period is handled apart, and the
# apostrophe and colon are not in the list: "it's" and "3:00" are left alone.
PUNCT: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)
# Words without their apostrophe mapped to the spelling with it. Matching happens after
# lowercasing, so the keys with a capital ("Im", "Ive", ...) never match: kept as in the
# official table. Values are whole words; some ("somebodyd", "'twas") are quirky but official.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

# A comma between two digits anywhere in the text switches every punctuation
# character to deletion (so "1,000" -> "1000" rather than "1 000").
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# "(?!<=\d)" is a negative *lookahead* for the literal text "<=" followed by a digit,
# not a lookbehind, so it never blocks a period: the pattern removes every period that
# is not followed by a digit, whatever precedes it ("2." -> "2", "3.5" and ".5" kept).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# The official evaluation passes re.UNICODE as the third positional argument of
# Pattern.sub, which is ``count``: at most int(re.UNICODE) == 32 periods are removed
# and any further ones are kept. alignbench reproduces that limit on purpose.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def prepare(text: str) -> str:
    """The pre-step applied to every string: newlines and tabs become spaces, then strip."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """Official punctuation handling.

    Each character of :data:`PUNCT` is deleted if it occurs next to a space in the
    *input* text (``p + ' '`` or ``' ' + p``) or if the input contains a comma between
    two digits; otherwise it is replaced by a space. Then up to 32 periods not followed
    by a digit are deleted (see the module comments on the regex and the limit).
    """
    out = text
    digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if p + " " in text or " " + p in text or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Official word handling: lowercase, split on whitespace, map number words to
    digits, drop articles, expand contractions, join with single spaces."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(text: str) -> str:
    """Full normalisation (punctuation, then digits/articles/contractions), no pre-step."""
    return process_digit_article(process_punctuation(text))


def _processed(prediction: str | None, answers: Sequence[str]) -> tuple[str | None, list[str]]:
    """The prediction and answers as the official metric compares them."""
    if len(answers) == 0:
        raise ValueError("VQA accuracy needs at least one human answer, got an empty list")
    gts = [prepare(a) for a in answers]
    pred = None if prediction is None else prepare(prediction)
    if len(set(gts)) > 1:  # normalise only when the human answers disagree
        gts = [normalize_answer(a) for a in gts]
        pred = None if pred is None else normalize_answer(pred)
    return pred, gts


def _leave_one_out(matches: int, n: int) -> float:
    """Mean of min(1, matches_i / 3) over the n leave-one-out subsets, where
    ``matches`` of the n answers equal the prediction."""
    # Removing one of the `matches` equal answers leaves matches - 1; removing any
    # other of the n answers leaves all of them.
    total = matches * min(1.0, (matches - 1) / 3) + (n - matches) * min(1.0, matches / 3)
    return total / n


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Official VQA accuracy in [0, 1] of ``prediction`` against the human ``answers``.

    Works for any number of answers >= 1; with ``n`` answers of which ``m`` match, each
    leave-one-out subset scores ``min(1, m_i / 3)``. With 10 answers the possible values
    are 0, 0.3, 0.6, 0.9 and 1. Raises ``ValueError`` on an empty ``answers`` list.
    """
    pred, gts = _processed(prediction, answers)
    n = len(gts)
    per_subset = []
    for i in range(n):  # remove answer i (by position), count matches among the others
        matches = sum(1 for j, a in enumerate(gts) if j != i and a == pred)
        per_subset.append(min(1.0, matches / 3))
    return sum(per_subset) / n


def answer_scores(answers: list[str]) -> dict[str, float]:
    """Official score of every distinct answer string among the human ``answers``.

    Keys are the answers after the processing the metric applies to them (pre-step,
    plus normalisation when the answers disagree), so ``vqa_accuracy(key, answers)``
    equals the value (the normalisation is idempotent except on strings with more than
    32 removable periods). Use it to build soft training targets.
    """
    _, gts = _processed(None, answers)
    return {a: _leave_one_out(c, len(gts)) for a, c in Counter(gts).items()}


class VQAAccuracy(Metric):
    """Official VQA accuracy accumulated over batches, in percent, per answer type.

    ``answer_types`` fixes the set of answer types (e.g. ``("yes/no", "number",
    "other")``) so that the states have a fixed size and sum across processes. State
    index 0 holds all examples; index ``1 + k`` holds answer type ``answer_types[k]``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    score_sum: torch.Tensor
    count: torch.Tensor

    def __init__(self, answer_types: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if isinstance(answer_types, str):
            raise TypeError("answer_types must be a sequence of strings, not a single string")
        self.answer_types: tuple[str, ...] = tuple(answer_types)
        if len(set(self.answer_types)) != len(self.answer_types):
            raise ValueError(f"answer_types has duplicates: {list(self.answer_types)}")
        self._type_index = {t: k + 1 for k, t in enumerate(self.answer_types)}
        size = 1 + len(self.answer_types)
        self.add_state("score_sum", default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        predictions: list[str],
        answers: list[list[str]],
        answer_types: list[str] | None = None,
    ) -> None:
        """Score a batch: one prediction, one list of human answers and optionally one
        answer type per example. Unknown answer types raise ``ValueError``."""
        if len(predictions) != len(answers):
            raise ValueError(f"got {len(predictions)} predictions but {len(answers)} answer lists")
        if answer_types is not None:
            if len(answer_types) != len(predictions):
                raise ValueError(f"got {len(answer_types)} answer types for {len(predictions)} predictions")
            unknown = sorted({t for t in answer_types if t not in self._type_index})
            if unknown:
                raise ValueError(
                    f"unknown answer type(s) {unknown}; valid answer types: {list(self.answer_types)}"
                )
        sums = [0.0] * (1 + len(self.answer_types))
        counts = [0.0] * len(sums)
        for i, (pred, gts) in enumerate(zip(predictions, answers)):
            score = vqa_accuracy(pred, gts)
            sums[0] += score
            counts[0] += 1
            if answer_types is not None:
                k = self._type_index[answer_types[i]]
                sums[k] += score
                counts[k] += 1
        self.score_sum += torch.tensor(sums, dtype=torch.float64, device=self.score_sum.device)
        self.count += torch.tensor(counts, dtype=torch.float64, device=self.count.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"vqa_acc": ..., "vqa_acc/<type>": ...}`` in percent; a type appears only if
        it has at least one example. ``vqa_acc`` is NaN before any example."""
        acc = 100.0 * self.score_sum / self.count
        out = {"vqa_acc": acc[0]}
        for t, k in self._type_index.items():
            if self.count[k] > 0:
                out[f"vqa_acc/{t}"] = acc[k]
        return out
