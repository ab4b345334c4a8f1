"""ARC: label extraction, accuracy, macro-F1 and the no-label share."""

import pytest

from ftmatrix import metrics as M
from ftmatrix.tasks import get_task

ARC = get_task("arc")
LETTERS = {"label": "C", "labels": ["A", "B", "C", "D"], "choices": ["dry palms", "wet palms", "oily palms", "lotion"]}
NUMBERS = {"label": "3", "labels": ["1", "2", "3", "4"], "choices": ["one", "two", "three", "four"]}


@pytest.mark.parametrize("generated, expected", [
    ("C", "C"),
    ("C.", "C"),
    ("(C)", "C"),
    ("C) oily palms", "C"),
    ("C: oily palms", "C"),
    ("The answer is C", "C"),
    ("The answer is (c).", "C"),
    ("Answer: C", "C"),
    ("answer: c", "C"),
    ("c", "C"),
    ("**C**", "C"),
    ("Ｃ", "C"),                                 # full-width letter (NFKC)
    ("Option D", "D"),
    ("I think the answer is B because palms", "B"),
    ("Let me think.\nB", "B"),                  # a final line holding only a label
    ("<think>A seems right</think>\nD", "D"),
    ("wet palms", "B"),                         # the text of a choice
    ("A because it is dry", "A"),
    ("A ball is not a choice", ""),             # the article 'A', not a label
    ("a dog", ""),
    ("E", ""),                                  # not a label of this question
    ("The answer is E", ""),
    ("", ""),
    ("   \n  ", ""),
    ("I do not know", ""),
])
def test_letter_label_extraction(generated, expected):
    assert ARC.extract(generated, LETTERS) == expected


@pytest.mark.parametrize("generated, expected", [
    # several labels offered as the answer: a hedge, no label
    ("C and D", ""),
    ("A, B, C or D", ""),
    ("B/C", ""),
    ("The answer is C or D.", ""),
    ("Either B or C", ""),
    ("**B** or **C**", ""),
    # a final committed label after reasoning
    ("D is wrong, so B", "B"),
    ("A and B are wrong, C is right.", "C"),
    ("A, B, and C are all wrong.\nD", "D"),
    ("I'd go with C.", "C"),
    ("I would choose (B).", "B"),
    ("Both A and C sound plausible, but the answer is C", "C"),
    ("**Answer:** C", "C"),
    ("The answer is C, not D.", "C"),
    ("B, because C is wrong", "B"),
    ("D is wrong.", ""),
])
def test_hedges_and_committed_labels(generated, expected):
    assert ARC.extract(generated, LETTERS) == expected


@pytest.mark.parametrize("generated, expected", [
    # an answer taken back right after it is given, and nothing put in its place: no label
    ("The answer is B. Wait, that's wrong.", ""),
    ("B. I made a mistake.", ""),
    ("**C**\nActually, this is incorrect.", ""),
    ("oily palms. Oops, that was wrong.", ""),
    # ... but a correction, a reaffirmation or a remark on another label keeps the answer
    ("The answer is B. Wait, that's wrong. The answer is C.", "C"),
    ("The answer is C. Wait, that's wrong... no, C is correct.", "C"),
    ("The answer is C. Wait, that's wrong. Yes, it's right.", "C"),
    ("The answer is C. A is wrong.", "C"),
    # a choice described as a mistake is not made: the answer stands
    ("The answer is B. It is a common mistake to choose A.", "B"),
    ("The answer is B. The trap is to pick A.", "B"),
    ("The answer is B. Many students would choose A.", "B"),
    ("The answer is B. It is tempting to go with A.", "B"),
    ("The answer is C. It is wrong to say the answer is D.", "C"),
    ("It is a common mistake to choose A.", ""),
    ("The answer is B. I choose A.", "A"),
])
def test_an_answer_taken_back_is_no_answer(generated, expected):
    assert ARC.extract(generated, LETTERS) == expected


@pytest.mark.parametrize("generated, expected", [
    # a second label offered beside the answer as another possibility: a hedge
    ("B, but it could also be C", ""),
    ("The answer is B. It might also be (C).", ""),
    ("The answer is B, though C is also possible.", ""),
    ("The answer is B, and C is also correct.", ""),
    ("The answer is B. Option C could also be right.", ""),
    ("The answer is B. **C** would also work.", ""),
    ("The answer is B. C is plausible too.", ""),
    ("B is correct. D is also a valid answer.", ""),
    ("The answer is B. I think C could also be correct.", ""),
    ("The answer is B. Option C (condensation) is also correct.", ""),
    ("The answer is B. C also fits.", ""),
    ("The answer is B. C works too.", ""),
    ("The answer is B. C is equally likely.", ""),
    ("The answer is B. Another possible answer is C.", ""),
    ("B (possibly C)", ""),
    ("The answer is B. It could be C too.", ""),
    ("The answer is B. I'd say C is also correct.", ""),
    ("The answer is B. The other possible answer is C.", ""),
    ("The answer is B. C could also be considered correct.", ""),
    ("The answer is B. Option C is also a strong candidate.", ""),
    ("The answer is B, but C is also a reasonable answer.", ""),
    ("The answer is B. Alternatively, C could be correct.", ""),
    ("The answer is B (C is also possible).", ""),
    ("The answer is B (or C as well).", ""),
    ("The answer is B (or possibly C if we count heat loss).", ""),
    ("B (possibly C too)", ""),
    ("C. D also works too.", ""),
    ("The answer is B, because both plants and animals need water. It could also be C.", ""),
    ("The answer is B. C is also possible, but I'm not sure.", ""),
    ("The answer is B. However, C could also be a valid answer depending on interpretation.", ""),
    # not an offer: weighed against the answer, negated, asked, taken back by a later statement,
    # a remark on another choice, a letter that is no label
    ("The answer is B. C is also possible, though less likely.", "B"),
    ("The answer is B. C is also true, but it does not answer the question.", "B"),
    ("The answer is B. I don't think C is also correct.", "B"),
    ("The answer is B. It could also be C? No.", "B"),
    ("It could also be C. The answer is B.", "B"),
    ("The answer is B. C is also a kind of gem.", "B"),
    ("The answer is B. A is also incorrect.", "B"),
    ("The answer is B. Vitamin C is also correct.", "B"),
    ("The answer is B. It could also be a fruit.", "B"),
    ("The answer is B. It might also be helpful to note that C is a fruit.", "B"),
    ("C is also correct. The answer is C.", "C"),
    ("The answer is B. C is also plausible. B is the most direct answer.", "B"),
    ("The answer is B. C is also true.", "B"),
    ("The answer is B. C is also correct for mammals, and the question asks about birds.", "B"),
    ("The answer is B. C is also plausible. However, it ignores friction.", "B"),
    ("The answer is B. Someone might say it could also be C. That would be a mistake.", "B"),
    ("The answer is B. If the question asked about winter, it could also be C.", "B"),
    ("The answer is B. UV-C is also correct.", "B"),
    ("Option B is correct. It could also be C. \\boxed{B}", "B"),
    ("The answer is B. Some might say C is also correct.", "B"),
    ("The answer is B. I think C is also wrong.", "B"),
    ("The answer is B. Another possible answer is C, but it ignores friction.", "B"),
    ("Another possible answer is C. The answer is B.", "B"),
    ("The answer is B (possibly C is a distractor).", "B"),
    ("The answer is B (or C is a distractor).", "B"),
    # someone else's view, a first impression, the parts of an answer that names several choices
    ("The answer is B. A common mistake is to think C is also correct.", "B"),
    ("The answer is B. Many students think C is also correct.", "B"),
    ("The answer is B. It's tempting to say C is also correct.", "B"),
    ("The answer is B. At first glance, C also fits.", "B"),
    ("The answer is D (both A and C). A fits, and C also fits.", "D"),
    ("The answer is B. Alternatively, C could be correct if we ignore friction.", "B"),
    ("The answer is B. C is also possible, but I'm not sure it fits the question.", "B"),
    ("The answer is B. C is also possible, but I'm not sure. B is the better answer.", "B"),
])
def test_a_second_label_offered_beside_the_answer_is_a_hedge(generated, expected):
    assert ARC.extract(generated, LETTERS) == expected


def test_a_digit_inside_a_number_is_no_second_offer():
    assert ARC.extract("The answer is 2. It could also be 4.", NUMBERS) == ""
    assert ARC.extract("The answer is 2. The pH of 7.4 is also correct.", NUMBERS) == "2"
    assert ARC.extract("The answer is 2. A reading of 0.4 would also work.", NUMBERS) == "2"


def test_offers_are_read_in_linear_time():
    """Thousands of offers, each weighed, denied or followed by the answer again, read in well
    under a second (reading from each offer to the end of the text took 12 to 85 s)."""
    import time

    for text in ("The answer is B. " + "C is also correct but " * 5000,
                 "The answer is B. " + "I don't think C is also correct. " * 3000,
                 "The answer is B. " + "C is also correct. B. " * 5000,
                 "The answer is B. " + "It could also be C. The answer is B. " * 3000,
                 "The answer is B " + "it could also be B, " * 5000,
                 "The answer is B. " + "*" * 30_000):
        started = time.perf_counter()
        ARC.extract(text, LETTERS)
        assert time.perf_counter() - started < 2.0


def test_every_question_reads_a_second_offer_as_a_hedge_and_a_rejection_as_the_answer(shared_data):
    """On every ARC question (letter and digit labels, four or five choices), another label
    offered after the answer makes a hedge; the same label rejected leaves the answer."""
    misread = []
    for path in sorted((shared_data / "arc").glob("*/*.jsonl")):
        for example in ARC.to_examples(ARC.read_local([str(path)], "arc_release"), str(path)):
            reference = example["reference"]
            gold = reference["label"]
            other = next(label for label in reference["labels"] if label != gold)
            for response, expected in ((f"The answer is {gold}. It could also be {other}.", ""),
                                       (f"The answer is {gold}, though {other} is also correct.", ""),
                                       (f"The answer is {gold}. {other} is also incorrect.", gold),
                                       (f"{gold}. " + " ".join(reference["choices"]), gold)):
                if ARC.extract(response, reference) != expected:
                    misread.append((response, expected))
    assert not misread, misread[:10]


# Boxes whose reading depends on the choices' texts: a choice's text wins over a label that opens
# it ('B cells' is the choice 'B cells', not label B), and a label of a numeric question offered
# beside another is a hedge.
CATS = {"label": "B", "labels": ["A", "B", "C", "D"], "choices": ["cat", "wildcat", "dog", "wolf"]}
CELLS = {"label": "C", "labels": ["A", "B", "C", "D"],
         "choices": ["T cells", "red blood cells", "B cells", "platelets"]}


@pytest.mark.parametrize("reference, generated, expected", [
    (CATS, "\\boxed{cat}", "A"),
    (CATS, "\\boxed{wildcat}", "B"),
    (CATS, "\\boxed{Wildcat}", "B"),
    (CATS, "\\boxed{\\text{Cat.}}", "A"),
    (CELLS, "\\boxed{B cells}", "C"),
    (CELLS, "\\boxed{\\text{B cells}}", "C"),
    (CELLS, "\\boxed{T cells}", "A"),
    (CELLS, "\\boxed{B. red blood cells}", "B"),
    (NUMBERS, "\\boxed{(2)}", "2"),
    (NUMBERS, "\\boxed{2 \\text{ or } 3}", ""),
    (NUMBERS, "\\boxed{2} or \\boxed{3}", ""),
    (NUMBERS, "\\boxed{3. three}", "3"),
])
def test_boxes_read_by_the_choices_texts(reference, generated, expected):
    assert ARC.extract(generated, reference) == expected


WATER = {"label": "B", "labels": ["A", "B", "C", "D"],
         "choices": ["Evaporation", "Condensation", "Precipitation", "Collection"]}


@pytest.mark.parametrize("reference, generated, expected", [
    # a second choice offered by its words, with its label or without: a hedge
    (WATER, "B) Condensation. Option C) Precipitation is also correct.", ""),
    (WATER, "The answer is B) Condensation. C) Precipitation is also correct.", ""),
    (WATER, "The answer is B: Condensation. Choice C: Precipitation is also a valid answer.", ""),
    (WATER, "The answer is B. C. Precipitation could also be correct.", ""),
    (WATER, "The answer is B. C - Precipitation is also possible.", ""),
    (WATER, "The answer is B. Precipitation is also correct.", ""),
    (WATER, "The answer is B. precipitation could also be correct.", ""),
    (WATER, "The answer is B. D) Precipitation is also correct.", ""),     # mislabelled, still a second choice
    (CELLS, "The answer is C) B cells. T cells could also be correct.", ""),
    # the answer's own words, a choice's words set aside or only mentioned: the answer stands
    (WATER, "The answer is B. Condensation is also correct.", "B"),
    (WATER, "B) Condensation. C) Precipitation is wrong.", "B"),
    (WATER, "The answer is B. Option C) Precipitation is also incorrect.", "B"),
    (WATER, "B) Condensation is correct. A) Evaporation is also a process, but not the answer.", "B"),
    (WATER, "The answer is B. It could also be precipitation water.", "B"),
    (CELLS, "The answer is C) B cells. Red blood cells carry oxygen.", "C"),
])
def test_a_second_choice_offered_by_its_words_is_a_hedge(reference, generated, expected):
    assert ARC.extract(generated, reference) == expected


WORK = {"label": "B", "labels": ["A", "B", "C", "D"], "choices": ["mill", "harbour", "forge", "bakery"]}
DIGITS = {"label": "B", "labels": ["A", "B", "C", "D"], "choices": ["5", "8", "3", "9"]}


@pytest.mark.parametrize("reference, generated, expected", [
    # an answer stated by a choice's words, as by its label
    (WORK, "The answer is harbour.", "B"),
    (WORK, "Harbour is the answer.", "B"),
    (WORK, "The answer is harbour, not mill.", "B"),
    (WORK, "Bakery workers make bread, so the answer is forge.", "C"),
    (WATER, "The answer is Precipitation.", "C"),
    # with the same hedges, withdrawals and dismissals as a label
    (WORK, "The answer is harbour or mill.", ""),
    (WORK, "The answer is harbour. Wait, that is wrong.", ""),
    (WORK, "Harbour is wrong. The answer is forge.", "C"),
    # a choice as short as a label is not read from a sentence ('8' is in '5 + 3 = 8')
    (DIGITS, "The answer is 8.", ""),
    (DIGITS, "8", "B"),
])
def test_an_answer_stated_by_a_choices_words(reference, generated, expected):
    assert ARC.extract(generated, reference) == expected


@pytest.mark.parametrize("reference, generated, expected", [
    # a second label joined after the first one's words: a hedge
    (WORK, "B (harbour) or C (forge)", ""),
    (WORK, "B (harbour)/C (forge)", ""),
    (WORK, "The answer is B (harbour) and C (forge).", ""),
    (WORK, "The answer is B (harbour) or A.", ""),
    (WORK, "B) harbour or C) forge", ""),
    (WORK, "The answer is B) harbour, or maybe C) forge.", ""),
    # the words do not hide what follows them
    (WORK, "The answer is B (harbour), and A (mill) is wrong.", "B"),
    (WORK, "B (harbour) is wrong. The answer is C.", "C"),
    (WORK, "The answer is B (harbour).", "B"),
    (WORK, "B) harbour", "B"),
    (WORK, "The answer is B (or A).", ""),
])
def test_a_label_joined_after_a_choices_words_is_a_hedge(reference, generated, expected):
    assert ARC.extract(generated, reference) == expected


@pytest.mark.parametrize("generated, expected", [
    ("C", "C"), ("  C\n", "C"), ("<think>A or C?</think>\nC", "C"),
    ("C.", ""), ("(C)", ""), ("c", ""), ("The answer is C", ""), ("**C**", ""), ("E", ""),
])
def test_strict_label_is_the_whole_response(generated, expected):
    assert M.extract_choice_label_strict(generated, LETTERS["labels"]) == expected


@pytest.mark.parametrize("generated, expected", [
    ("3", "3"), ("3.", "3"), ("(3)", "3"), ("The answer is 2.", "2"), ("Answer: 4", "4"),
    ("C", ""),   # letters are not the labels of this question
    ("5", ""),
])
def test_numeric_label_extraction(generated, expected):
    assert ARC.extract(generated, NUMBERS) == expected


def test_five_choice_question():
    reference = {"label": "E", "labels": list("ABCDE"), "choices": list("vwxyz")}
    assert ARC.extract("E", reference) == "E"
    assert ARC.score("E", reference) == {"correct": 100.0, "no_label": 0.0}


def rows_of(pairs, labels=("A", "B", "C", "D")):
    rows = []
    for gold, pred in pairs:
        reference = {"label": gold, "labels": list(labels), "choices": [f"choice {x}" for x in labels]}
        rows.append({"extracted": pred, "reference": reference, "scores": ARC.score(pred, reference)})
    return rows


def test_accuracy_macro_f1_and_no_label_hand_computed():
    # gold A A B B C; pred A B B "" A
    # A: tp 1, gold 2, pred 2 -> F1 2/4;  B: tp 1, gold 2, pred 2 -> 2/4;  C: tp 0, gold 1, pred 0 -> 0
    rows = rows_of([("A", "A"), ("A", "B"), ("B", "B"), ("B", ""), ("C", "A")])
    m = ARC.metrics(rows)
    assert m["accuracy"] == pytest.approx(40.0)
    assert m["macro_f1"] == pytest.approx(100 * (0.5 + 0.5 + 0.0) / 3)
    assert m["no_label_rate"] == pytest.approx(20.0)
    assert m["total"] == 5
    assert ARC.headline == "macro_f1"


def test_macro_f1_ignores_predicted_classes_absent_from_gold():
    # gold only A and B; the prediction D is a miss for A and no class's false positive
    rows = rows_of([("A", "A"), ("A", "D"), ("B", "B")])
    # A: tp 1, gold 2, pred 1 -> 2/3; B: 1
    assert ARC.metrics(rows)["macro_f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_numeric_labels_count_by_position():
    # '1' is the first choice like 'A': a question labelled 1-4 adds no classes of its own
    rows = rows_of([("A", "A"), ("B", "B")]) + rows_of([("1", "1"), ("2", "1")], labels=("1", "2", "3", "4"))
    # positions: gold A B A B, pred A B A A -> A: tp 2, gold 2, pred 3 -> 4/5; B: tp 1, gold 2, pred 1 -> 2/3
    m = ARC.metrics(rows)
    assert m["macro_f1"] == pytest.approx(100 * (4 / 5 + 2 / 3) / 2)
    assert m["accuracy"] == pytest.approx(75.0)


def test_metrics_on_no_rows_are_undefined():
    m = ARC.metrics([])
    assert m == {"accuracy": None, "macro_f1": None, "no_label_rate": None, "total": 0}


def test_gold_completions_are_extracted_exactly(shared_data):
    for path in sorted((shared_data / "arc").glob("*/*.jsonl")):
        examples = ARC.to_examples(ARC.read_local([str(path)], "arc_release"), str(path))
        for example in examples:
            reference = example["reference"]
            assert ARC.extract(example["completion"][0]["content"], reference) == reference["label"]
            assert ARC.extract(f"The answer is {reference['label']}.", reference) == reference["label"]
        rows = [{"extracted": e["reference"]["label"], "reference": e["reference"],
                 "scores": ARC.score(e["reference"]["label"], e["reference"])} for e in examples]
        m = ARC.metrics(rows)
        assert m["accuracy"] == 100.0 and m["macro_f1"] == 100.0 and m["no_label_rate"] == 0.0
