"""SQuAD v2 exact match and F1 against the official v2.0 evaluation script's definitions.

Hand-computed cases pin each rule (normalisation, multiple golds, unanswerable questions,
punctuation, articles); a second check runs the official script's procedure (written out
here from its definition, over SQuAD's nested JSON) and the task's per-row path on the same
predictions of the real dev data, and requires the same numbers.
"""

import collections
import json
import random
import time

import pytest

from ftmatrix import metrics as M
from ftmatrix.tasks import get_task

SQUAD = get_task("squad_v2")


def scored(pred, answers):
    return M.squad_score(pred, answers)


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower", "eiffel tower"),
    ("U.S.A.", "usa"),
    ("  New\tYork \n City ", "new york city"),
    ("An apple a day", "apple day"),
    ("another theme", "another theme"),      # articles only as whole words
    ("rock-and-roll", "rockandroll"),        # punctuation is deleted, not turned into spaces
    ("“curly” quotes", "“curly” quotes"),    # only ASCII punctuation, as in the official script
    ("", ""),
])
def test_normalisation_follows_the_official_rules(text, expected):
    assert M.squad_normalize(text) == expected


def test_exact_match_after_normalisation():
    assert scored("the Eiffel Tower", ["Eiffel Tower"]) == {"exact": 100.0, "f1": 100.0}
    assert scored("PARIS.", ["paris"]) == {"exact": 100.0, "f1": 100.0}


def test_f1_partial_overlap_hand_computed():
    # pred tokens: eiffel tower in paris (4); gold: eiffel tower (2); common 2
    # P = 2/4, R = 2/2, F1 = 2·0.5·1 / 1.5 = 2/3
    s = scored("Eiffel Tower in Paris", ["the Eiffel Tower"])
    assert s["exact"] == 0.0
    assert s["f1"] == pytest.approx(100 * 2 / 3)


def test_repeated_tokens_count_once_per_match():
    # 'the the cat cat cat' -> [cat, cat, cat]; gold [cat, cat]: common 2, P 2/3, R 1, F1 0.8
    assert scored("the the cat cat cat", ["cat cat"])["f1"] == pytest.approx(80.0)


def test_articles_are_whole_words():
    # [another, one] vs [other, one]: common 1, P = R = 1/2, F1 = 1/2
    s = scored("another one", ["other one"])
    assert s == {"exact": 0.0, "f1": pytest.approx(50.0)}


def test_punctuation_inside_words_joins_them():
    # 'rock-and-roll' -> [rockandroll] vs [rock, and, roll]: no common token
    assert scored("rock-and-roll", ["rock and roll"]) == {"exact": 0.0, "f1": 0.0}


def test_maximum_over_gold_answers():
    assert scored("Denver Broncos", ["Broncos", "Denver Broncos", "the Broncos"])["exact"] == 100.0
    # vs 'Denver Broncos': P = R = 1/2 -> 1/2; vs 'Broncos': P 1/2, R 1 -> 2/3; max 2/3
    s = scored("Broncos team", ["Denver Broncos", "Broncos"])
    assert s["exact"] == 0.0
    assert s["f1"] == pytest.approx(100 * 2 / 3)


def test_unanswerable_question_gold_is_the_empty_string():
    assert scored("", []) == {"exact": 100.0, "f1": 100.0}
    assert scored("Paris", []) == {"exact": 0.0, "f1": 0.0}
    # an answerable question answered with nothing scores nothing
    assert scored("", ["Paris"]) == {"exact": 0.0, "f1": 0.0}


def test_gold_answers_that_normalise_to_nothing_are_dropped():
    # the official script keeps only golds with tokens; none left -> [''] as for no answer
    assert scored("", ["."]) == {"exact": 100.0, "f1": 100.0}
    assert scored("the", ["a", "an"]) == {"exact": 100.0, "f1": 100.0}   # both sides empty
    assert scored("x", [".", "x"]) == {"exact": 100.0, "f1": 100.0}


def test_corpus_metrics_overall_hasans_noans_hand_computed():
    rows = []
    for pred, answers in [("Paris", ["Paris"]),            # HasAns: EM 1, F1 1
                          ("Denver Broncos", ["Broncos"]), # HasAns: EM 0, F1 2/3
                          ("", []),                        # NoAns: abstains -> 1, 1
                          ("London", [])]:                 # NoAns: answers -> 0, 0
        reference = {"answers": answers, "is_impossible": not answers}
        rows.append({"extracted": pred, "reference": reference, "scores": SQUAD.score(pred, reference)})
    m = SQUAD.metrics(rows)
    assert m["exact"] == pytest.approx(50.0)
    assert m["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert m["HasAns_exact"] == pytest.approx(50.0)
    assert m["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert m["NoAns_exact"] == pytest.approx(50.0)
    assert m["NoAns_f1"] == pytest.approx(50.0)
    assert (m["HasAns_total"], m["NoAns_total"], m["total"]) == (2, 2, 4)
    assert m["abstain_rate"] == pytest.approx(25.0)
    assert SQUAD.headline == "f1"


def test_metrics_of_only_answerable_questions_leave_noans_undefined():
    reference = {"answers": ["x"], "is_impossible": False}
    m = SQUAD.metrics([{"extracted": "x", "reference": reference, "scores": SQUAD.score("x", reference)}])
    assert m["NoAns_f1"] is None and m["NoAns_total"] == 0 and m["HasAns_f1"] == 100.0


def _official_procedure(dataset, predictions):
    """The v2.0 script's procedure over its nested JSON, from its definition: has-answer from
    the answers list, golds filtered by normalisation, maximum over golds, 100·sum/total."""
    has_answer, exact, f1 = {}, {}, {}
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qid = qa["id"]
                has_answer[qid] = bool(qa["answers"])
                golds = [a["text"] for a in qa["answers"] if M.squad_normalize(a["text"])] or [""]
                exact[qid] = max(M.squad_exact(g, predictions[qid]) for g in golds)
                f1[qid] = max(M.squad_f1(g, predictions[qid]) for g in golds)

    def block(ids):
        return {"exact": 100.0 * sum(exact[i] for i in ids) / len(ids),
                "f1": 100.0 * sum(f1[i] for i in ids) / len(ids), "total": len(ids)}

    out = block(list(exact))
    for name, ids in (("HasAns", [i for i in exact if has_answer[i]]), ("NoAns", [i for i in exact if not has_answer[i]])):
        for key, value in block(ids).items():
            out[f"{name}_{key}"] = value
    return out


def test_task_path_equals_the_official_procedure_on_real_dev_data(shared_data):
    path = shared_data / "squad_v2" / "dev-v2.0.half.json"
    dataset = json.loads(path.read_text(encoding="utf-8"))["data"]
    examples = SQUAD.to_examples(SQUAD.read_local([str(path)], "squad_json"), str(path))
    contexts = {qa["id"]: p["context"] for a in dataset for p in a["paragraphs"] for qa in p["qas"]}
    rng = random.Random(7)
    predictions = {}
    for example in examples:
        answers = example["reference"]["answers"]
        words = contexts[example["id"]].split()
        kind = rng.randrange(5)
        if kind == 0:
            predictions[example["id"]] = answers[0] if answers else ""
        elif kind == 1:
            predictions[example["id"]] = ""
        elif kind == 2 and answers:
            predictions[example["id"]] = answers[-1].upper() + " ."
        else:
            start = rng.randrange(len(words))
            predictions[example["id"]] = " ".join(words[start:start + rng.randrange(1, 6)])
    rows = []
    for example in examples:
        pred = predictions[example["id"]]
        rows.append({"extracted": pred, "reference": example["reference"],
                     "scores": SQUAD.score(pred, example["reference"])})
    ours = SQUAD.metrics(rows)
    official = _official_procedure(dataset, predictions)
    for key, value in official.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert collections.Counter(bool(e["reference"]["answers"]) for e in examples)[False] == 3168


def test_official_sample_with_gold_predictions_scores_100(shared_data):
    path = shared_data / "squad_v2" / "dev-v2.0.sample.json"
    examples = SQUAD.to_examples(SQUAD.read_local([str(path)], "squad_json"), str(path))
    rows = []
    for example in examples:
        # the model says what its completion says; extraction turns 'unanswerable' into abstaining
        extracted = SQUAD.extract(example["completion"][0]["content"], example["reference"])
        rows.append({"extracted": extracted, "reference": example["reference"],
                     "scores": SQUAD.score(extracted, example["reference"])})
    m = SQUAD.metrics(rows)
    assert m["exact"] == 100.0 and m["f1"] == 100.0 and m["total"] == 14


@pytest.mark.parametrize("generated, expected", [
    ("Paris", "Paris"),
    ('"Paris"', "Paris"),
    ("“Paris.”", "Paris."),
    ("Answer: 'Paris'.", "Paris"),
    ("  \n Answer - 1066 \n", "1066"),
    ("Paris\nBecause the context says so.", "Paris"),
    ("<think>the passage…</think>\n\nParis", "Paris"),
    ("they are ‘directly applicable’", "they are ‘directly applicable’"),
    ("unanswerable", ""),
    ("Unanswerable.", ""),
    ("The question is unanswerable.", ""),
    ("No answer", ""),
    ("cannot be answered", ""),
    ("None", "None"),        # an answer: the dev set has questions whose answer is "None"
    ("unknown", "unknown"),
    ("N/A", ""),
    # No answer at all is no abstention: nothing, only thinking, cut off inside it, a bare prefix.
    ("", M.SQUAD_NO_ANSWER),
    ("  \n ", M.SQUAD_NO_ANSWER),
    ("<think>\nThe answer is Paris.\n</think>", M.SQUAD_NO_ANSWER),
    ("<think>\nI think it is Paris, but", M.SQUAD_NO_ANSWER),
    ("Answer:\n\n", M.SQUAD_NO_ANSWER),
    ("The answer is", M.SQUAD_NO_ANSWER),
    ("Answer:\nParis", "Paris"),                 # the answer on the line after its prefix
    ("**Answer:**\n\nParis", "Paris"),
    ("The answer is Paris.", "Paris."),
    ("**Answer:** Paris", "Paris"),
    ("Based on the context, the answer is *Paris*.", "Paris."),
    ("Final answer: `Paris`", "Paris"),
    ("This question cannot be answered from the context.", ""),
    ("The context does not say.", ""),
    ("The passage doesn't mention when it opened.", ""),
    ("There is no information about this in the context.", ""),
    ("I cannot answer this from the passage.", ""),
    ("Answer:\nunanswerable", ""),
    # An introduction is no answer: the answer is on the next line.
    ("Sure! Here is the answer:\nParis", "Paris"),
    ("Okay.\n\nParis", "Paris"),
    ("Here is the answer: Paris", "Paris"),
    ("Well, Paris", "Paris"),
    ("well into the nineteenth century", "well into the nineteenth century"),   # a dev-set span
    ("the vehicle and everything inside of it is at rest:", "the vehicle and everything inside of it is at rest:"),
    # Abstentions that name no passage, or come with an apology.
    ("Not mentioned.", ""),
    ("I don't know.", ""),
    ("I'm sorry, but the context doesn't provide that information.", ""),
    ("Unfortunately, the passage does not mention when it opened.", ""),
    ("I think the context does not say.", ""),
    ("No, the context does not actually say.", ""),
    ("unanswerable\n\nThe context names his brother but not his father.", ""),   # an explanation, no guess
    ("The context does not say.\nTherefore, the answer is unanswerable.", ""),   # abstaining again
    ("unanswerable\nAnswer: The passage does not mention it.", ""),
    ("The passage does not mention the year.\n\nAnswer: The year is not mentioned.", ""),
    ("The passage does not mention the year.\n\n**Answer:** None", ""),
    ("The passage does not mention the year.\n\nThe final answer is $\\boxed{unanswerable}$.", ""),
    ("Unanswerable.\n\nThe answer is outside the scope of the passage.", ""),
    # A hedge commits to nothing: an answer and an abstention, or several answers.
    ("Paris, though the context does not say so directly.", M.SQUAD_NO_ANSWER),
    ("Paris (the passage does not state it)", M.SQUAD_NO_ANSWER),
    ("The context does not say, but it is probably Paris.", M.SQUAD_NO_ANSWER),
    ("The passage doesn't say; maybe it was Lyon.", M.SQUAD_NO_ANSWER),
    ("Answer: unanswerable (possibly Paris)", M.SQUAD_NO_ANSWER),
    ("unanswerable\n\nIf I had to guess: Paris", M.SQUAD_NO_ANSWER),
    ("unanswerable\nParis", M.SQUAD_NO_ANSWER),
    ("The context does not say.\nThe answer is Paris.", M.SQUAD_NO_ANSWER),
    ("Paris\n\nHowever, the context does not actually say.", M.SQUAD_NO_ANSWER),
    # an answer taken back right after it is given
    ("Paris. Wait, that's wrong.", M.SQUAD_NO_ANSWER),
    ("The answer is Paris. Actually, I made a mistake.", M.SQUAD_NO_ANSWER),
    ("Paris\nWait, that is incorrect.", M.SQUAD_NO_ANSWER),
    ("Paris\nLondon", M.SQUAD_NO_ANSWER),
    ("- Paris\n- London", M.SQUAD_NO_ANSWER),
    ("Paris or possibly Lyon", M.SQUAD_NO_ANSWER),
    ("Maybe Paris or Lyon.", M.SQUAD_NO_ANSWER),
    # … but one answer said twice, an explanation or a note is no hedge, nor a bare 'X or Y'
    # (about one gold span in a hundred is one).
    ("Paris\nParis", "Paris"),
    ("2007\n\n(unanswerable parts: none)", "2007"),
    ("Paris or Lyon", "Paris or Lyon"),
])
def test_span_extraction(generated, expected):
    assert M.extract_span(generated) == expected


@pytest.mark.parametrize("generated, answers, f1", [
    ("The answer is Paris.", ["Paris"], 100.0),
    ("**Answer:** Paris", ["Paris"], 100.0),
    ("Answer:\nParis", ["Paris"], 100.0),
    ("None", ["None"], 100.0),
    ("None", [], 0.0),                 # on an unanswerable question "None" is a wrong answer
    ("The context does not say.", [], 100.0),
    # A response that gives no answer earns no abstention's credit on an unanswerable question.
    ("", [], 0.0),
    ("<think>\nThe passage never says when it opened, so", [], 0.0),
    # A hedge earns neither the answer's credit nor the abstention's.
    ("Paris, though the context does not say so.", ["Paris"], 0.0),
    ("Paris, though the context does not say so.", [], 0.0),
    ("unanswerable\nIf I had to guess: Paris", ["Paris"], 0.0),
    ("unanswerable\nIf I had to guess: Paris", [], 0.0),
    ("Paris\nLyon", ["Paris"], 0.0),
    ("Paris or possibly Lyon", ["Paris"], 0.0),
    ("Answer:", [], 0.0),
    ("", ["Paris"], 0.0),
])
def test_issue_cases_score(generated, answers, f1):
    reference = {"answers": answers, "is_impossible": not answers}
    assert SQUAD.score(SQUAD.extract(generated, reference), reference)["f1"] == f1


@pytest.mark.parametrize("generated, expected", [
    ("Paris", "Paris"),
    ("unanswerable", ""),
    ("Unanswerable.", ""),                       # the prompt's word, up to case and punctuation
    ("<think>hmm</think>\nParis", "Paris"),
    ("Answer: Paris", "Answer: Paris"),          # not the asked form: taken as written
    ("The context does not say.", "The context does not say."),
    ("None", "None"),
    ("", M.SQUAD_NO_ANSWER),                     # nothing is no abstention
    ("<think>still thinking", M.SQUAD_NO_ANSWER),
    ("Paris or possibly Lyon", M.SQUAD_NO_ANSWER),   # a hedge earns nothing read literally either
    ("Paris, though the context does not say so.", M.SQUAD_NO_ANSWER),
])
def test_strict_span_is_the_whole_response(generated, expected):
    assert M.extract_span_strict(generated) == expected


@pytest.mark.parametrize("generated", ["", "<think>The passage does not say.</think>", "<think>cut off"])
def test_a_response_with_no_answer_is_not_in_the_asked_form_nor_an_abstention(generated):
    assert not M.squad_follows_format(generated)
    rows = [{"extracted": M.extract_span(generated), "reference": {"answers": []}}]
    metrics = M.squad_metrics(rows)
    assert metrics["NoAns_f1"] == 0.0 and metrics["abstain_rate"] == 0.0


@pytest.mark.parametrize("generated", ["Paris or possibly Lyon", "Paris (the passage does not state it)",
                                       "unanswerable, but maybe Paris"])
def test_a_hedge_is_not_the_asked_form(generated):
    assert not M.squad_follows_format(generated)
    assert M.squad_follows_format("Paris") and M.squad_follows_format("unanswerable")


def test_no_gold_span_of_the_dev_set_reads_as_a_hedge_or_an_abstention(shared_data):
    """Every real gold answer, given as the response, is read back as itself: the hedge and
    abstention readings never take a span of the kind the dev set holds."""
    dataset = json.loads((shared_data / "squad_v2" / "dev-v2.0.half.json").read_text(encoding="utf-8"))["data"]
    golds = {a["text"] for article in dataset for p in article["paragraphs"] for qa in p["qas"] for a in qa["answers"]}
    assert len(golds) > 4000
    misread = [g for g in golds if M.squad_normalize(M.extract_span(g)) != M.squad_normalize(g)]
    assert misread == []


# Forms chat models write (Llama-, GPT- and Qwen-style): lead-ins naming 'the provided context',
# headings and introductions before the answer, abstentions in many words (typographic
# apostrophes included), answers and guesses beside an abstention, remarks after an answer.
@pytest.mark.parametrize("generated, expected", [
    ('Based on the provided context, the question is unanswerable.', ''),
    ('Based on the given passage, the answer is unanswerable.', ''),
    ('Based on the information provided, this question cannot be answered.', ''),
    ('From the provided context, it is unanswerable.', ''),
    ('After reviewing the context, I could not find the answer.', ''),
    ("In the context, there's no mention of this.", ''),
    ('Based on the provided context, the answer is Paris.', 'Paris.'),
    ('According to the provided passage, Paris', 'Paris'),
    ('The context does not mention Lyon; the answer is Paris.', M.SQUAD_NO_ANSWER),   # an answer after all
    # An abstention's explanation is not read as an answer, however specific; only a guess is.
    ('Although the passage does not give an exact date, it was in 1997.', ''),
    ('The context does not explicitly state this, but it suggests Paris.', M.SQUAD_NO_ANSWER),
    ('The context does not specify the exact year, only that it was in the 1990s.', ''),
    ('The passage does not specify; however, Paris is mentioned.', ''),
    ('The context does not explicitly state this.\nHowever, it mentions Paris.', ''),
    ('**Answer**\nParis', 'Paris'),
    ('### Answer\nParis', 'Paris'),
    ('Final Answer\nParis', 'Paris'),
    ('**Final Answer**\n\nParis', 'Paris'),
    ('Answer\nunanswerable', ''),
    ('**Answer**\n\nunanswerable', ''),
    ('Sure, I can help with that.\n\nParis', 'Paris'),
    ('Here is the answer.\nParis', 'Paris'),
    ('Great question!\n\nParis', 'Paris'),
    ('Sure thing!\n\nParis', 'Paris'),
    ('Let me find the answer in the context.\n\nParis', 'Paris'),
    ('Sure, I can help with that!\n\nAnswer: Paris', 'Paris'),
    ('Not mentioned in the provided context.', ''),
    ('The context provided does not mention this.', ''),
    ('This information is not mentioned in the provided text.', ''),
    ('The answer is not in the context.', ''),
    ('According to the given context, there is no answer.', ''),
    ('The information is not available in the context.', ''),
    ('The paragraph does not mention it.', ''),
    ('The document does not mention it.', ''),
    ('The passage above does not say.', ''),
    ('The context lacks this information.', ''),
    ('It does not say.', ''),
    ("It doesn't say.", ''),
    ("I'm unable to find this in the passage.", ''),
    ("I'm not able to answer based on the context.", ''),
    ("I don't have enough information to answer.", ''),
    ("There isn't enough information to answer.", ''),
    ('Not enough context.', ''),
    ('Not given.', ''),
    ('Not found.', ''),
    ('Not available.', ''),
    ('Unclear.', 'Unclear.'),
    ('Cannot determine.', ''),
    ('Impossible to say.', ''),
    ('NA', ''),
    ('Not applicable.', ''),
    ('None mentioned.', ''),
    ("Sorry, this isn't mentioned.", ''),
    ('The context is silent on this.', ''),
    ('The context doesn’t say.', ''),
    ('The passage doesn’t mention it.', ''),
    ('I don’t know.', ''),
    ('I can’t tell.', ''),
    ('It’s not stated.', ''),
    ('I can’t answer that from the context.', ''),
    ('The passage doesn’t specify, but it was probably Paris.', M.SQUAD_NO_ANSWER),
    ('Paris or unanswerable', M.SQUAD_NO_ANSWER),
    ('Paris / unanswerable', M.SQUAD_NO_ANSWER),
    ('unanswerable or Paris', M.SQUAD_NO_ANSWER),
    ("I don't know, maybe Paris.", M.SQUAD_NO_ANSWER),
    ("I'm not sure, but I think Paris.", M.SQUAD_NO_ANSWER),
    ('No idea, possibly Paris.', M.SQUAD_NO_ANSWER),
    ('Either Paris or Lyon.', 'Either Paris or Lyon.'),
    ('It could be Paris or Lyon.', M.SQUAD_NO_ANSWER),
    ('unanswerable\n\nThe context suggests Paris.', M.SQUAD_NO_ANSWER),
    ('Paris\n\nStated in paragraph 2', 'Paris'),
    ('unanswerable\n\nThe passage only covers 1990s', ''),
    ('Paris\n\nHope that helps', 'Paris'),
    ('Paris\n\n**Explanation**', 'Paris'),
    ('1997\n\nIn 1997', '1997'),
    ('Paris\n\nParis, France', 'Paris'),
    ("1997\n\nThe context doesn't say the month.", '1997'),
    ('Paris.\n\nThe context does not mention Lyon.', 'Paris.'),
    ('Paris\n\nNote: the context does not say whether it moved later.', 'Paris'),
    ('• Paris', 'Paris'),
    ('1. Paris', 'Paris'),
    ('- Answer: Paris', 'Paris'),
    ('Sure! The answer is Paris.', 'Paris.'),
    ('Certainly! Paris.', 'Paris.'),
    ('Okay! Paris', 'Paris'),
    ('Alright, the answer is Paris.', 'Paris.'),
    ('Great question! The answer is Paris.', 'Paris.'),
    ('From the passage: Paris', 'Paris'),
    ('Span: Paris', 'Paris'),
    ('Output: Paris', 'Paris'),
    ('So far', 'So far'),
    ('The passage covers his youth but does not mention this. Unanswerable.', ''),
    ('The context only discusses his early life, so this cannot be answered.', ''),
    ('Paris\nLondon', M.SQUAD_NO_ANSWER),
    ('1997\n1998', M.SQUAD_NO_ANSWER),
])
def test_reading_of_the_forms_chat_models_write(generated, expected):
    _reads_as(generated, expected)


# Explained abstentions stay abstentions (the explanation is not read as an answer, only a guess
# is); an answer with a caveat ("doesn't say so") is a hedge, with a remark on another detail it
# stands; headings, introductions and bulleted explanations are no second answer.
@pytest.mark.parametrize("generated, expected", [
    ('Unanswerable. The passage states that he was born in 1810 but not when he died.', ''),
    ('unanswerable\n\nThe passage mentions his early career but does not say when he retired.', ''),
    ('The passage does not mention the attendance. Therefore, the answer is: unanswerable.', ''),
    ('The context does not provide this information, as it is focused on the 19th century.', ''),
    ('Unanswerable. It is not clear from the passage.', ''),
    ('Unanswerable, since the passage only mentions the 1990s.', ''),
    ('**Answer:** unanswerable\n\n**Reasoning:** It is not mentioned.', ''),
    ("I'm sorry, but the passage doesn't mention that. It only states the year the game was played.", ''),
    ('Unanswerable. I think the passage only covers his youth.', ''),
    ("Paris, though the context doesn't say so.", M.SQUAD_NO_ANSWER),
    ('Paris, though the context doesn’t say so.', M.SQUAD_NO_ANSWER),
    ("The Normans were from Normandy, though the passage doesn't say so explicitly.", M.SQUAD_NO_ANSWER),
    ("Paris\n\nThe passage doesn't explicitly state this.", M.SQUAD_NO_ANSWER),
    ('1997. The context does not specify the month.', '1997'),
    ('1997 (the month is not mentioned in the passage)', '1997'),
    ("The Denver Broncos. The passage doesn't mention the score.", 'The Denver Broncos'),
    ('Paris\n\n**Rationale**', 'Paris'),
    ('Paris\n\n**Analysis**', 'Paris'),
    ('Paris\n\n**Supporting Evidence**', 'Paris'),
    ('Paris\n\nParagraph 2', 'Paris'),
    ('Paris\n\nThanks', 'Paris'),
    ('Unanswerable\n\n**Reason**', ''),
    ('Let me look at the context.\n\nParis', 'Paris'),
    ('## Response\n\nParis', 'Paris'),
    ('**My answer**\n\nParis', 'Paris'),
    ('**Extracted Span**\nParis', 'Paris'),
    ("Here's the answer from the context.\n\nParis", 'Paris'),
    ("Sure!\n\nHere's the answer:\n\n**Answer:**\nParis", 'Paris'),
    ('- **Answer:** Denver Broncos\n- **Evidence:** "They won the game."', 'Denver Broncos'),
    ('1. Denver Broncos\n2. They defeated the Panthers 24-10.', 'Denver Broncos'),
    ('The passage discusses the treaty but does not mention the date.', ''),
    ('The passage discusses the treaty. It does not mention the date.', ''),
    ('This information is not provided.', ''),
    ('Unable to answer.', ''),
    ('Cannot answer based on the context.', ''),
    ("It's not possible to determine from the context.", ''),
    ('The passage says nothing about the date.', ''),
    ('The context does not have information about the date.', ''),
    ('The text makes no reference to the date.', ''),
    ('There is nothing in the context about this.', ''),
    ('The answer to this question is not in the passage.', ''),
    ("It doesn't mention it.", ''),
    ('Not stated. The passage mentions only the treaty.', ''),
    ("I'm not sure, but I think Paris.", M.SQUAD_NO_ANSWER),
])
def test_explanations_headings_and_remarks_are_not_answers(generated, expected):
    _reads_as(generated, expected)


# Common forms of Llama-, GPT- and Qwen-style answers and refusals: abstentions with 'or' in them
# or an adverb ('not explicitly mentioned'), contractions ("isn't"), 'no specific information',
# more verbs ('does not clarify'); a remark using 'explicitly' on another detail; reasoning first
# and the verdict on a later line; greetings and citations around the answer.
@pytest.mark.parametrize("generated, expected", [
    ('The context does not mention the population of the city or its area.', ''),
    ('The passage does not mention or provide information about the founder.', ''),
    ("The context doesn't specify who signed the treaty or when.", ''),
    ('The passage does not say who designed/built the bridge.', ''),
    ('Paris or unanswerable', M.SQUAD_NO_ANSWER),
    ('unanswerable / Paris', M.SQUAD_NO_ANSWER),
    ('This is not explicitly mentioned in the context.', ''),
    ('It is not explicitly stated in the text.', ''),
    ('The signer is not directly mentioned in the passage.', ''),
    ('The designer is not named in the passage.', ''),
    ("It isn't mentioned in the text.", ''),
    ("This information isn't provided in the passage.", ''),
    ("That wasn't mentioned in the context.", ''),
    ("The answer isn't stated in the passage.", ''),
    ('There is no information provided about his death.', ''),
    ('There is no specific information about the signer in the context.', ''),
    ('There is no explicit mention of the signer in the passage.', ''),
    ('There is no direct mention of who signed it.', ''),
    ('It is not possible to determine who signed the treaty based on the context.', ''),
    ('It is impossible to determine the exact date from the passage.', ''),
    ('The passage does not clarify when he died.', ''),
    ("The passage doesn't reveal his age.", ''),
    ("The context doesn't offer any details about it.", ''),
    ('The passage does not talk about his retirement.', ''),
    ('The text does not refer to the treaty.', ''),
    ('The passage focuses on his early career and does not discuss his retirement.', ''),
    ('It covers the 1970s; it does not address the 1980s.', ''),
    ('1783. The passage does not explicitly mention the month.', '1783'),
    ('Paris\n\nNote: The context does not explicitly state the exact date.', 'Paris'),
    ('Paris (not explicitly stated in the passage)', M.SQUAD_NO_ANSWER),
    ("Paris, though the context doesn't say so explicitly.", M.SQUAD_NO_ANSWER),
    ('The context describes the negotiation of the treaty in Paris.\n\nIt does not mention who signed it.\n\nTherefore, the question is unanswerable.', ''),
    ('The context mentions the treaty but not its signer.\n\nAnswer: unanswerable', ''),
    ('The context states that the treaty was signed in Paris.\n\n**Answer:** Paris', 'Paris'),
    ("I'd be happy to help! The answer is Paris.", 'Paris.'),
    ("I'd be happy to help!\n\nUnfortunately, the passage does not mention who signed the treaty.", ''),
    ("I'd be happy to help!\n\nParis", 'Paris'),
    ('The answer to this question is Paris.', 'Paris.'),
    ('As mentioned in the context, Paris.', 'Paris.'),
    ('Based on the information in the passage, Paris.', 'Paris.'),
    ('Based on the context you provided, the answer is Paris.', 'Paris.'),
    ('Based on the passage, I would answer: Paris', 'Paris'),
    ('The answer is **Paris**, as stated in the context.', 'Paris'),
    ('It was signed in Paris.', 'It was signed in Paris.'),
])
def test_common_chat_model_answers_and_refusals(generated, expected):
    _reads_as(generated, expected)


def test_a_long_line_of_doubt_words_is_read_in_linear_time():
    started = time.perf_counter()
    M.extract_span("maybe " * 20000 + "Paris or Lyon")
    assert time.perf_counter() - started < 2.0


def _reads_as(generated: str, expected: str) -> None:
    """The response reads as ``expected`` (a span up to the official normalisation, '' for an
    abstention, SQUAD_NO_ANSWER for no answer or a hedge)."""
    got = M.extract_span(generated)
    assert (got == M.SQUAD_NO_ANSWER) == (expected == M.SQUAD_NO_ANSWER)
    assert M.squad_normalize(got) == M.squad_normalize(expected)


@pytest.mark.parametrize("text", ["unanswerable\nAnswer: here is the answer" + " " * 30_000 + ":",
                                  "Paris" + " " * 30_000 + "x, as stated in the context."])
def test_a_long_run_of_spaces_is_read_in_linear_time(text):
    """A run of spaces is read once (the clause and citation patterns tried it from each of its
    spaces: seconds on 8,000)."""
    M.read_squad_response.cache_clear()
    started = time.perf_counter()
    M.extract_span(text)
    assert time.perf_counter() - started < 2.0
