"""Every scorer meets a careful human grader exactly, on tests/data/graded_corpus.jsonl.

The corpus holds responses to real questions (ARC-Challenge dev, SQuAD v2 dev,
OpenMathInstruct-2) in the forms models write them: the asked form, prefixes, markdown, think
blocks, hedges, prose abstentions, Unicode, numeric labels, equivalent and wrong maths. Each
line carries the grader's reading:

- ``answer``: the answer the response commits to ('' for none: no answer, a hedge, an
  abstention); for maths, the final answer as written; for SQuAD, '' is an abstention (right on
  an unanswerable question) and '∅' (metrics.SQUAD_NO_ANSWER) no answer at all or a hedge;
- ``correct``: ARC and maths, whether that answer is right (SQuAD is graded by the official
  exact match and F1 of ``answer``);
- ``follows_format``: whether the response is in the form the prompt asked for (ARC: the label
  and nothing else; maths: the answer in ``\\boxed{}``; SQuAD: one line that is the span, or
  "unanswerable").
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from ftmatrix import metrics as M
from ftmatrix.tasks import get_task

CORPUS = Path(__file__).parent / "data" / "graded_corpus.jsonl"
ITEMS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _id(item: dict) -> str:
    return f"{item['kind']}:{item['source_id']}:{item['note']}"


def strict_reading(item: dict) -> str:
    return get_task(item["kind"]).read_strict(item["generated"], item["reference"])


def follows_format(item: dict) -> bool:
    return get_task(item["kind"]).in_format(item["generated"], item["reference"])


def test_the_corpus_is_large_and_covers_every_kind_and_form():
    kinds = collections.Counter(item["kind"] for item in ITEMS)
    assert len(ITEMS) >= 300 and set(kinds) == {"arc", "openmath", "squad_v2"} and min(kinds.values()) >= 100
    text = "\n".join(item["generated"] for item in ITEMS)
    for form in ("<think>", "**", "Answer:", " or ", "\u2212", "unanswerable", "does not"):
        assert form in text, form
    assert any(item["reference"].get("labels", ["A"])[0] == "1" for item in ITEMS), "numeric ARC labels"
    for kind in kinds:
        graded = [item for item in ITEMS if item["kind"] == kind]
        assert {item["follows_format"] for item in graded} == {True, False}, kind


@pytest.mark.parametrize("item", ITEMS, ids=_id)
def test_lenient_scorer_meets_the_grader(item):
    task = get_task(item["kind"])
    reference = item["reference"]
    extracted = task.extract(item["generated"], reference)
    scores = task.score(extracted, reference)
    if item["kind"] == "arc":
        assert extracted == item["answer"]
        assert scores["correct"] == 100.0 * item["correct"]
    elif item["kind"] == "openmath":
        assert scores["exact_match"] == 100.0 * item["correct"], extracted
    else:
        assert M.squad_normalize(extracted) == M.squad_normalize(item["answer"])
        assert scores == M.squad_score(item["answer"], reference["answers"])


@pytest.mark.parametrize("item", ITEMS, ids=_id)
def test_strict_scorer_meets_the_grader(item):
    """In the asked form the strict reading is the grader's answer; out of it, it earns nothing
    a lenient reading would not (ARC and maths: no answer; SQuAD: the response taken literally)."""
    assert follows_format(item) == item["follows_format"]
    task = get_task(item["kind"])
    reference = item["reference"]
    strict = task.score(strict_reading(item), reference)
    lenient = task.score(task.extract(item["generated"], reference), reference)
    if item["follows_format"]:
        assert strict == lenient
    elif item["kind"] != "squad_v2":
        assert strict_reading(item) == ""
    headline = {"arc": "correct", "openmath": "exact_match", "squad_v2": "f1"}[item["kind"]]
    assert strict[headline] <= lenient[headline]
