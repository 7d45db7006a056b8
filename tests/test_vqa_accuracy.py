"""Tests of the official VQA accuracy (alignbench.metrics.vqa)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignbench.metrics.vqa import (
    ARTICLES,
    CONTRACTIONS,
    MANUAL_MAP,
    PUNCT,
    VQAAccuracy,
    answer_scores,
    prepare,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
)

# ---------------------------------------------------------------------------------------
# Second, independent implementation: a transcription of the official evaluation loop.
# Answers are dicts with an answer_id, removed by dict inequality as the official code
# does, the dicts are mutated in place, the number map uses setdefault and the period
# regex gets re.UNICODE as its positional third argument (i.e. count=32).
# ---------------------------------------------------------------------------------------


class _OfficialTranscription:
    def __init__(self) -> None:
        self.contractions = dict(CONTRACTIONS)
        self.manualMap = dict(MANUAL_MAP)
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = list(PUNCT)

    def processPunctuation(self, inText: str) -> str:
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) != None):  # noqa: E711
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText: str) -> str:
        outText = []
        for word in inText.lower().split():
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)

    def score(self, prediction: str, answers: list[str]) -> float:
        gts = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]
        for ansDic in gts:
            ansDic["answer"] = ansDic["answer"].replace("\n", " ")
            ansDic["answer"] = ansDic["answer"].replace("\t", " ")
            ansDic["answer"] = ansDic["answer"].strip()
        resAns = prediction.replace("\n", " ").replace("\t", " ").strip()
        gtAcc = []
        gtAnswers = [ans["answer"] for ans in gts]
        if len(set(gtAnswers)) > 1:
            for ansDic in gts:
                ansDic["answer"] = self.processPunctuation(ansDic["answer"])
                ansDic["answer"] = self.processDigitArticle(ansDic["answer"])
            resAns = self.processPunctuation(resAns)
            resAns = self.processDigitArticle(resAns)
        for gtAnsDatum in gts:
            otherGTAns = [item for item in gts if item != gtAnsDatum]
            matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
            gtAcc.append(min(1, float(len(matchingAns)) / 3))
        return float(sum(gtAcc)) / len(gtAcc)


OFFICIAL = _OfficialTranscription()

TRICKY = [
    "2", "two", "Two", " two ", "two\t", "2.", "2.0", "1,000", "1000", "1 000", "ten", "10",
    "none", "None", "0", "zero", "yes", "Yes", "yes.", "yes!", "yes ?", "\nyes", "no", "No.",
    "a dog", "the dog", "The Dog", "dog", "dogs", "an apple", "apple", "it's", "its", "it s",
    "dont", "don't", "Don't", "do not", "Im", "im", "i'm", "hes", "he's", "left-hand",
    "left hand", "left - hand", "red,blue", "red, blue", "red blue", "e.g.", "eg", "3:00",
    "(dog)", "dog\n", ".5", "0.5", "a.b", "5.x", "a", "the", "", "  ", "yes/no", "yes no",
    "black & white", "black and white", "tennis racket", "tennis-racket", "10:30", "1,2",
    "5x", "wait", "wait" + "." * 34,  # period quirks: no lookbehind, at most 32 removed
]


# --------------------------------------------------------------------------- tables


def test_tables_match_the_official_ones():
    assert len(CONTRACTIONS) == 120
    digest = hashlib.sha256(json.dumps(sorted(CONTRACTIONS.items())).encode()).hexdigest()
    assert digest == "3e5960526f62912d3b70896069c43c13d7c21be38d50ca28efbb9095b499454f"
    assert MANUAL_MAP == {
        "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
        "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
    }
    assert ARTICLES == {"a", "an", "the"}
    assert len(PUNCT) == 21 and "'" not in PUNCT and ":" not in PUNCT and "." not in PUNCT


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes.", "yes"),
        ("it's", "it's"),  # the apostrophe is not punctuation here
        ("1,000", "1000"),  # digit-comma-digit: punctuation deleted, the number stays whole
        ("red,blue", "red blue"),  # otherwise a comma becomes a space ...
        ("red, blue", "red blue"),  # ... unless it touches a space: then it is deleted
        ("left-hand", "left hand"),
        ("left - hand", "left  hand"),
        ("1,000-2", "10002"),  # a digit comma anywhere deletes every punctuation char
        ("2.", "2"),
        ("3.5", "3.5"),  # a period followed by a digit is kept
        (".5", ".5"),
        ("5.x", "5x"),  # "(?!<=\d)" is not a lookbehind: a preceding digit does not protect
        ("e.g.", "eg"),
        ("3:00", "3:00"),
        ("yes?", "yes "),
        ("(dog)", " dog "),
    ],
)
def test_process_punctuation(text, expected):
    assert process_punctuation(text) == expected
    assert OFFICIAL.processPunctuation(text) == expected


def test_period_strip_removes_at_most_32_periods():
    assert process_punctuation("." * 40) == "." * 8
    assert process_punctuation("a." * 33) == "a" * 32 + "a."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a dog", "dog"),
        ("The Dog", "dog"),
        ("an apple a day", "apple day"),
        ("dont", "don't"),
        ("Dont", "don't"),
        ("its", "its"),
        ("two", "2"),
        ("None", "0"),
        ("ten  dogs", "10 dogs"),
        ("Im", "im"),  # the capitalised keys of the table never match after lowercasing
        ("twas", "'twas"),
        ("the", ""),
    ],
)
def test_process_digit_article(text, expected):
    assert process_digit_article(text) == expected
    assert OFFICIAL.processDigitArticle(text) == expected


def test_prepare():
    assert prepare("\tyes\n") == "yes"
    assert prepare(" red\tblue ") == "red blue"


# --------------------------------------------------------------------------- vqa_accuracy


@pytest.mark.parametrize(
    ("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (10, 1.0)]
)
def test_leave_one_out_values_for_ten_answers(matches, expected):
    answers = ["yes"] * matches + ["no"] * (10 - matches)
    assert vqa_accuracy("yes", answers) == pytest.approx(expected)
    # 3 matches: 7 subsets keep 3 (score 1) and 3 subsets keep 2 (score 2/3) -> 0.9
    assert OFFICIAL.score("yes", answers) == pytest.approx(expected)


def test_number_words_only_normalised_when_answers_differ():
    assert vqa_accuracy("two", ["2"] * 10) == 0.0  # identical answers: exact match only
    assert vqa_accuracy("2", ["2"] * 10) == 1.0
    assert vqa_accuracy("two", ["2"] * 9 + ["2."]) == 1.0  # differ -> all normalised to "2"
    assert vqa_accuracy("two", ["2"] * 9 + ["two"]) == 1.0
    # the pre-step makes "2\t" identical to "2", so there is no normalisation
    assert vqa_accuracy("two", ["2"] * 9 + ["2\t"]) == 0.0
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0  # not even lowercased
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0  # but the pre-step applies


def test_normalisation_cases_with_differing_answers():
    answers = ["yes"] * 3 + ["no"] * 7
    assert vqa_accuracy("yes.", answers) == pytest.approx(0.9)
    assert vqa_accuracy("YES!", answers) == pytest.approx(0.9)
    dog = ["dog"] * 4 + ["cat"] * 6
    assert vqa_accuracy("a dog", dog) == 1.0
    assert vqa_accuracy("The Dog.", dog) == 1.0
    dont = ["don't"] * 2 + ["dont", "no"] + ["maybe"] * 6
    assert vqa_accuracy("dont", dont) == pytest.approx(0.9)  # 3 answers become "don't"
    assert vqa_accuracy("1,000", ["1000", "1000", "1 000", "thousand"] + ["many"] * 6) == pytest.approx(0.6)
    assert vqa_accuracy("it's", ["it's"] * 4 + ["its"] * 6) == 1.0
    assert vqa_accuracy("its", ["it's"] * 4 + ["its"] * 6) == 1.0


@pytest.mark.parametrize("repeats", range(4, 21))
def test_repeated_single_answer_is_exact_match(repeats):
    assert vqa_accuracy("red", ["red"] * repeats) == 1.0
    assert vqa_accuracy("red.", ["red"] * repeats) == 0.0
    assert vqa_accuracy("blue", ["red"] * repeats) == 0.0


@pytest.mark.parametrize(("repeats", "best"), [(1, 0.0), (2, 1 / 3), (3, 2 / 3)])
def test_fewer_than_four_answers_cannot_reach_one(repeats, best):
    assert vqa_accuracy("red", ["red"] * repeats) == pytest.approx(best)
    assert OFFICIAL.score("red", ["red"] * repeats) == pytest.approx(best)


def test_empty_answers_raise():
    with pytest.raises(ValueError, match="at least one human answer"):
        vqa_accuracy("yes", [])
    with pytest.raises(ValueError, match="at least one human answer"):
        answer_scores([])


# --------------------------------------------------------------------------- answer_scores


def test_answer_scores_hand_case():
    answers = ["Two", "2", "two.", "2", "3", "three", "a 3", "4", "none", "0"]
    scores = answer_scores(answers)
    assert set(scores) == {"2", "3", "4", "0"}
    assert scores["2"] == pytest.approx(1.0)
    assert scores["3"] == pytest.approx(0.9)
    assert scores["0"] == pytest.approx(0.6)
    assert scores["4"] == pytest.approx(0.3)
    assert answer_scores(["Yes"] * 10) == {"Yes": 1.0}  # identical: kept as given
    assert answer_scores([" yes\t"] * 10) == {"yes": 1.0}


def test_answer_scores_consistent_with_vqa_accuracy():
    rng = random.Random(1)
    for _ in range(200):
        answers = [rng.choice(TRICKY[:30]) for _ in range(rng.choice([1, 3, 5, 10, 10]))]
        for key, value in answer_scores(answers).items():
            assert vqa_accuracy(key, answers) == pytest.approx(value)
            assert OFFICIAL.score(key, answers) == pytest.approx(value)


# --------------------------------------------------------------------------- cross-check


def test_matches_official_transcription_on_random_answer_sets():
    rng = random.Random(2024)
    nonzero, values = 0, set()
    for _ in range(600):
        pool = rng.sample(TRICKY, rng.randint(1, 6))  # few distinct strings -> agreement
        n = rng.choice([1, 2, 3, 4, 5, 10, 10, 10, 12])
        answers = [rng.choice(pool) for _ in range(n)]
        if rng.random() < 0.15:
            answers = [answers[0]] * n
        prediction = rng.choice(pool) if rng.random() < 0.7 else rng.choice(TRICKY)
        ours, official = vqa_accuracy(prediction, answers), OFFICIAL.score(prediction, answers)
        assert ours == pytest.approx(official, abs=1e-12), (prediction, answers)
        nonzero += ours > 0
        values.add(round(ours, 6))
    # the random sets exercise matching and partial credit, not only misses
    assert nonzero > 200 and len(values) >= 8


# --------------------------------------------------------------------------- properties

_WORDS = st.sampled_from(TRICKY[:40])


@settings(max_examples=300, deadline=None)
@given(answers=st.lists(_WORDS, min_size=10, max_size=10), prediction=_WORDS)
def test_ten_answer_scores_take_five_values(answers, prediction):
    score = vqa_accuracy(prediction, answers)
    assert any(math.isclose(score, v, abs_tol=1e-12) for v in (0.0, 0.3, 0.6, 0.9, 1.0))
    assert score == pytest.approx(OFFICIAL.score(prediction, answers))


@settings(max_examples=300, deadline=None)
@given(answer=st.text(max_size=12), prediction=st.text(max_size=12), repeats=st.integers(4, 15))
def test_repeated_single_answer_property(answer, prediction, repeats):
    expected = float(prepare(prediction) == prepare(answer))
    assert vqa_accuracy(prediction, [answer] * repeats) == expected
    assert vqa_accuracy(answer, [answer] * repeats) == 1.0


# --------------------------------------------------------------------------- the Metric

TYPES = ("yes/no", "number", "other")
BATCH = (
    ["yes", "two", "dog", "red", "no", "3"],
    [
        ["yes"] * 10,
        ["2"] * 9 + ["two"],
        ["dog"] * 3 + ["cat"] * 7,
        ["blue"] * 10,
        ["no"] * 2 + ["yes"] * 8,
        ["3"] * 10,
    ],
    ["yes/no", "number", "other", "other", "yes/no", "number"],
)
# per-example scores: 1, 1, 0.9, 0, 0.6, 1


def test_metric_update_compute_per_type():
    metric = VQAAccuracy(answer_types=TYPES)
    assert metric.score_sum.dtype == torch.float64 and metric.score_sum.shape == (4,)
    metric.update(*BATCH)
    out = metric.compute()
    assert set(out) == {"vqa_acc", "vqa_acc/yes/no", "vqa_acc/number", "vqa_acc/other"}
    assert out["vqa_acc"].item() == pytest.approx(100 * 4.5 / 6)
    assert out["vqa_acc/yes/no"].item() == pytest.approx(80.0)
    assert out["vqa_acc/number"].item() == pytest.approx(100.0)
    assert out["vqa_acc/other"].item() == pytest.approx(45.0)


def test_metric_types_without_examples_are_left_out():
    metric = VQAAccuracy(answer_types=TYPES)
    metric.update(["yes"], [["yes"] * 10], ["yes/no"])
    assert set(metric.compute()) == {"vqa_acc", "vqa_acc/yes/no"}
    plain = VQAAccuracy()
    plain.update(BATCH[0], BATCH[1])
    assert set(plain.compute()) == {"vqa_acc"}


def test_metric_rejects_unknown_type_and_bad_lengths():
    metric = VQAAccuracy(answer_types=TYPES)
    with pytest.raises(ValueError, match=r"'colour'.*yes/no.*number.*other"):
        metric.update(["red"], [["red"] * 10], ["colour"])
    with pytest.raises(ValueError, match="predictions"):
        metric.update(["red", "blue"], [["red"] * 10])
    with pytest.raises(ValueError, match="answer types"):
        metric.update(["red"], [["red"] * 10], ["other", "other"])
    assert metric.count.sum().item() == 0  # nothing was counted by the failed updates
    with pytest.raises(ValueError, match="valid answer types: \\[\\]"):
        VQAAccuracy().update(["red"], [["red"] * 10], ["other"])


def test_metric_reset():
    metric = VQAAccuracy(answer_types=TYPES)
    metric.update(*BATCH)
    metric.reset()
    assert metric.count.sum().item() == 0 and metric.score_sum.sum().item() == 0
    metric.update(["no"], [["no"] * 10], ["yes/no"])
    assert metric.compute() == {"vqa_acc": torch.tensor(100.0, dtype=torch.float64),
                                "vqa_acc/yes/no": torch.tensor(100.0, dtype=torch.float64)}


def _halves():
    preds, answers, types = BATCH
    return (preds[:2], answers[:2], types[:2]), (preds[2:], answers[2:], types[2:])


def test_summed_states_of_two_processes_equal_one_process():
    full = VQAAccuracy(answer_types=TYPES)
    full.update(*BATCH)
    first, second = VQAAccuracy(answer_types=TYPES), VQAAccuracy(answer_types=TYPES)
    a, b = _halves()
    first.update(*a)
    second.update(*b)
    merged = VQAAccuracy(answer_types=TYPES)
    merged.update([], [])  # mark as updated, as a synced metric would be
    merged.score_sum = first.score_sum + second.score_sum  # the "sum" reduction of a sync
    merged.count = first.count + second.count
    expected = full.compute()
    got = merged.compute()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key].item() == pytest.approx(expected[key].item())

    first.merge_state(second)
    got = first.compute()
    for key in expected:
        assert got[key].item() == pytest.approx(expected[key].item())


def test_metric_handles_multiple_updates_like_one():
    one = VQAAccuracy(answer_types=TYPES)
    one.update(*BATCH)
    two = VQAAccuracy(answer_types=TYPES)
    for part in _halves():
        two.update(*part)
    assert torch.equal(one.score_sum, two.score_sum) and torch.equal(one.count, two.count)
    assert VQAAccuracy.full_state_update is False and VQAAccuracy.higher_is_better is True
