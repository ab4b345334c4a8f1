"""Hostile generations are scored, never a crash: empty, huge, repetitive, odd Unicode, unclosed markup."""

import time

import pytest

from ftmatrix.tasks import get_task, registry

KINDS = registry().kinds()


def reference_and_gold(kind: str) -> tuple[dict, str]:
    """The kind's own example row: its reference, and the answer extracted from its gold completion."""
    task = get_task(kind)
    example = task.to_examples([task.example], kind)[0]
    return example["reference"], task.extract(example["completion"][0]["content"], example["reference"])

HOSTILE = [
    "",
    " ",
    "\n\n\n",
    "\x00\x01\x02",
    "B" * 200_000,
    "the answer is " * 20_000,
    "\\boxed{" * 5_000,
    "}" * 5_000 + "\\boxed{1}",
    "\\frac{" * 3_000 + "1",
    "9" * 50_000,
    "1," * 20_000,
    "<think>" * 1_000,
    "</think>" * 1_000,
    "🙂🙃 \u202e\u200b\ufeff Ａｎｓｗｅｒ： Ｂ",
    "İstanbul ǅ ß ﬁ \u0301\u0301",
    "\ud800 lone surrogate",
    "<script>alert(1)</script>",
    "$" * 10_000,
    "\\text{" * 2_000,
    "x = y = z = " * 2_000 + "3",
]


@pytest.mark.parametrize("kind", KINDS)
def test_extract_score_and_metrics_never_crash(kind):
    task = get_task(kind)
    reference, _ = reference_and_gold(kind)
    rows = []
    started = time.perf_counter()
    for text in HOSTILE:
        extracted = task.extract(text, reference)
        assert isinstance(extracted, str)
        scores = task.score(extracted, reference)
        assert all(v is None or isinstance(v, float) for v in scores.values())
        rows.append({"extracted": extracted, "reference": reference, "scores": scores})
    metrics = task.metrics(rows)
    assert metrics[task.headline] is not None
    assert 0.0 <= metrics[task.headline] <= 100.0
    # linear-time handling: the whole hostile set scores in well under a few seconds
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_on_empty_rows_are_undefined_not_zero(kind):
    task = get_task(kind)
    metrics = task.metrics([])
    assert metrics[task.headline] is None


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_recompute_scores_when_rows_lack_them(kind):
    task = get_task(kind)
    reference, gold = reference_and_gold(kind)
    with_scores = [{"extracted": gold, "reference": reference, "scores": task.score(gold, reference)}]
    without = [{"extracted": gold, "reference": reference}]
    assert task.metrics(with_scores) == task.metrics(without)
    assert task.metrics(without)[task.headline] == 100.0


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_text_scored_directly_as_an_answer(kind):
    """Scoring is safe and bounded even on answers extraction would never produce."""
    task = get_task(kind)
    started = time.perf_counter()
    for text in HOSTILE + ["\\frac{" * 3_000, "\\frac{" * 190 + "1" + "}{2}" * 190]:
        scores = task.score(text, reference_and_gold(kind)[0])
        assert all(v is None or isinstance(v, float) for v in scores.values())
    assert time.perf_counter() - started < 20


# Long runs a generation may hold (a budget spent on newlines or spaces, a row of stars or dots)
# after words the readers' patterns look for: each was read once from every character of the
# run, seconds to minutes apiece (cubically on the first few; "answer" and 1,000 spaces took 2 s).
RUNS = [
    "answer" + " " * 1_000 + "!",
    "I choose" + " " * 1_000 + "the",
    "The answer is" + "\n" * 20_000 + "x",
    "B" + "\t" * 20_000 + "?",
    "Paris" + " " * 20_000 + "x?",
    "answer" + "*" * 20_000 + "!",
    "The answer is B. It could also be C" + "*" * 20_000 + "x",
    "\\boxed{B}" + " " * 20_000 + "x \\boxed{C}?",
    "\\boxed{5}" + "\n" * 20_000 + "x",
    "." * 20_000,
    "Let me check" + " " * 20_000 + "?",
    "<think>" * 3_000,
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", RUNS, ids=range(len(RUNS)))
def test_a_long_run_is_read_in_linear_time(kind, text):
    task = get_task(kind)
    reference, _ = reference_and_gold(kind)
    started = time.perf_counter()
    for read in (task.extract, task.extract_strict, task.follows_format):
        if read is not None:
            read(text, reference)
    assert time.perf_counter() - started < 1.0
