"""Property-based tests (Hypothesis) of answer extraction and normalisation.

- extraction, normalisation, scoring and metrics never raise, whatever the text;
- normalisation is idempotent;
- gold answers always score full marks (and a completion written the way the training data
  writes it is extracted back to its gold answer).
"""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftmatrix import metrics as M
from ftmatrix.tasks import get_task

ARC, MATH, SQUAD = get_task("arc"), get_task("openmath"), get_task("squad_v2")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text built from pieces that matter to the parsers, plus arbitrary Unicode.
PIECES = list("0123456789.,/-+ $%{}()[]^_=:*'\"\n\t") + [
    "\\frac", "\\dfrac", "\\boxed", "\\boxed{", "\\fbox", "\\text{", "\\left", "\\right", "\\,", "\\!", "\\\\",
    "^\\circ", "\\%", "\\sqrt", "cm", "answer is", "Answer:", "The answer is", "unanswerable", "none", "the",
    "A", "B", "C", "D", "E", "a", "c", "(C)", "<think>", "</think>", "Ｃ", "ﬁ", "İ", "\u200b", "\u202e", "é", "🙂",
]
pieces_text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
any_text = st.one_of(pieces_text, st.text(max_size=80), st.text(alphabet=string.printable, max_size=80))


@SETTINGS
@given(any_text)
def test_math_normalisation_never_crashes_and_is_idempotent(text):
    normal = M.normalize_math_answer(text)
    assert isinstance(normal, str)
    assert M.normalize_math_answer(normal) == normal
    M.parse_number(text)


@SETTINGS
@given(any_text)
def test_squad_normalisation_is_idempotent(text):
    normal = M.squad_normalize(text)
    assert M.squad_normalize(normal) == normal


@SETTINGS
@given(any_text, any_text)
def test_every_task_extracts_and_scores_any_text(generated, gold):
    references = {
        ARC: {"label": "B", "labels": ["A", "B", "C", "D"], "choices": [gold, "b", "c", "d"]},
        MATH: {"answer": gold},
        SQUAD: {"answers": [gold] if gold.strip() else [], "is_impossible": not gold.strip()},
    }
    for task, reference in references.items():
        extracted = task.extract(generated, reference)
        assert isinstance(extracted, str)
        scores = task.score(extracted, reference)
        metrics = task.metrics([{"extracted": extracted, "reference": reference, "scores": scores}])
        headline = metrics[task.headline]
        assert headline is None or 0.0 <= headline <= 100.0


@SETTINGS
@given(any_text)
def test_math_gold_scores_full_marks(gold):
    if M.normalize_math_answer(gold):          # an empty answer is dropped by the data stage
        assert MATH.score(gold, {"answer": gold})["exact_match"] == 100.0


# Answers as a worked solution writes them: balanced braces, inside \boxed{} at the end.
maths_atoms = st.sampled_from(["12", "-3", "0.75", "1,000", "\\frac{3}{4}", "\\dfrac{1}{2}", "2\\sqrt{5}", "x",
                               "\\pi", "(1, 2)", "\\{1, 2\\}", "50\\%", "\\text{cm}", " ", "+", "^2", "\\cdot"])
maths_answers = st.lists(maths_atoms, min_size=1, max_size=6).map("".join)


@SETTINGS
@given(maths_answers, st.text(alphabet=string.ascii_letters + " .,=+", max_size=60))
def test_boxed_gold_in_a_solution_is_extracted_and_scores_full_marks(gold, prose):
    if not M.normalize_math_answer(gold):
        return
    solution = f"{prose}\nSo the answer is \\boxed{{{gold}}}."
    extracted = MATH.extract(solution, {"answer": gold})
    assert MATH.score(extracted, {"answer": gold})["exact_match"] == 100.0


span_words = st.text(alphabet=string.ascii_letters + string.digits + " -,.'%$", min_size=1, max_size=40)


@SETTINGS
@given(st.lists(span_words, min_size=1, max_size=4))
def test_squad_golds_score_full_marks_and_survive_extraction(answers):
    reference = {"answers": answers, "is_impossible": False}
    for gold in answers:
        # the official script drops golds with no tokens after normalisation ('A', '.')
        if M.squad_normalize(gold):
            assert SQUAD.score(gold, reference) == {"exact": 100.0, "f1": 100.0}
    # the training completion (first gold) comes back as a full-marks span, unless the gold
    # itself reads as an abstention ('none') or has no tokens at all
    extracted = SQUAD.extract(answers[0], reference)
    if M.squad_normalize(answers[0]) and not M.is_abstention(answers[0]):
        assert SQUAD.score(extracted, reference)["f1"] == 100.0
    abstain = SQUAD.extract("unanswerable", {"answers": [], "is_impossible": True})
    assert SQUAD.score(abstain, {"answers": [], "is_impossible": True}) == {"exact": 100.0, "f1": 100.0}


@SETTINGS
@given(st.integers(min_value=2, max_value=5), st.booleans(), st.data())
def test_arc_gold_label_is_always_extracted(n, numeric, data):
    labels = [str(i + 1) for i in range(n)] if numeric else list("ABCDE"[:n])
    choices = data.draw(st.lists(st.text(max_size=30), min_size=n, max_size=n))
    gold = data.draw(st.sampled_from(labels))
    reference = {"label": gold, "labels": labels, "choices": choices}
    template = data.draw(st.sampled_from(["{}", "{}.", "({})", "{}) text", "The answer is {}", "Answer: {}",
                                          "**{}**", "The answer is ({}).", "Thinking…\n{}"]))
    extracted = ARC.extract(template.format(gold), reference)
    assert extracted == gold
    assert ARC.score(extracted, reference) == {"correct": 100.0, "no_label": 0.0}
