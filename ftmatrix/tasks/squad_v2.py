"""SQuAD v2: extractive reading comprehension where about half the questions have no answer.

Hub schema (rajpurkar/squad_v2): ``{"id", "title", "context", "question", "answers": {"text": [...],
"answer_start": [...]}}``; an unanswerable question has no answers. The official release's
nested JSON (``squad_json``) is read too.

Prompt: the context, the question, and an instruction to copy a short span from the context or
say "unanswerable". Completion: the first gold answer, or "unanswerable". Reference:
``{"answers": [texts], "is_impossible": bool}``. Extraction: the first line that is more than an
introduction, without quotes or an "Answer:" prefix; "unanswerable" and its obvious variants become
"" (abstain); a hedge between an answer and an abstention, or between two answers, commits to
nothing and scores 0 (``metrics.read_squad_response``). Metrics: the
official v2.0 exact match and F1 (headline), overall and split into HasAns / NoAns.

When the eval set is carved from the training source (no eval split), questions are kept apart
by paragraph: every question on an evaluated context stays out of training, so no evaluated
passage was seen in fine-tuning. Articles may be shared between the sides (the official split
is by article: give an eval split or eval files for that).
"""

from __future__ import annotations

from typing import Sequence

from ftmatrix import metrics as M
from ftmatrix.bootstrap import mean_of, ratio_of
from ftmatrix.data import (WHERE, assistant_message, get_field, get_str_list, normalise_text, read_hub_files,
                           unsupported_format, user_message, where_of)
from ftmatrix.errors import DataError
from ftmatrix.io import read_json
from ftmatrix.tasks.base import TaskKind

FORMATS = ("hub_jsonl", "hub_parquet", "squad_json")
ABSTAIN = "unanswerable"


def build_prompt(context: str, question: str) -> str:
    return (f"Context: {context.strip()}\n\nQuestion: {question.strip()}\n\n"
            f"Answer with a short span copied from the context. If the context does not answer the "
            f"question, answer \"{ABSTAIN}\".")


def to_examples(rows: Sequence[dict], where: str) -> list[dict]:
    examples = []
    for number, row in enumerate(rows, start=1):
        at = where_of(row, f"{where}, row {number}") if isinstance(row, dict) else f"{where}, row {number}"
        ident = get_field(row, "id", str, at, allow_empty=False)
        context = get_field(row, "context", str, at, allow_empty=False)
        question = get_field(row, "question", str, at, allow_empty=False)
        answers = get_field(row, "answers", dict, at)
        texts = get_str_list(answers, "text", f"{at}, field 'answers'")
        for i, text in enumerate(texts):
            # Extractive: a gold answer is a span of its context (else no response copied from the
            # context, as the prompt asks, can match it).
            if not text.strip() or text not in context:
                raise DataError(f"{at}: answers.text[{i}] {text[:60]!r} is not a span of the row's context; "
                                f"SQuAD answers are copied from the context — fix the answer or the context, or "
                                f"remove the row.")
        examples.append({
            "id": ident,
            "prompt": user_message(build_prompt(context, question)),
            "completion": assistant_message(texts[0] if texts else ABSTAIN),
            "reference": {"answers": texts, "is_impossible": not texts},
        })
    return examples


def read_squad_json(path: str) -> list[dict]:
    """SQuAD's official nested JSON -> hub-schema rows, each tagged with its place in the file."""
    document = read_json(path)
    data = get_field(document, "data", list, str(path)) if isinstance(document, dict) else None
    if data is None:
        raise DataError(f"{path}: expected SQuAD's official JSON (an object with a 'data' list), got "
                        f"{type(document).__name__}; set the source's format to match the file.")
    rows = []
    for a, article in enumerate(data):
        at_article = f"{path}, data[{a}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(get_field(article, "paragraphs", list, at_article)):
            at_paragraph = f"{at_article}.paragraphs[{p}]"
            context = get_field(paragraph, "context", str, at_paragraph)
            for q, qa in enumerate(get_field(paragraph, "qas", list, at_paragraph)):
                at = f"{at_paragraph}.qas[{q}] (question {len(rows) + 1})"
                answers = get_field(qa, "answers", list, at)
                texts, starts = [], []
                for i, answer in enumerate(answers):
                    texts.append(get_field(answer, "text", str, f"{at}, answers[{i}]"))
                    start = answer.get("answer_start", -1) if isinstance(answer, dict) else -1
                    starts.append(start if isinstance(start, int) else -1)
                impossible = qa.get("is_impossible", False) if isinstance(qa, dict) else False
                if impossible is True and texts:
                    raise DataError(f"{at}: is_impossible is true but the question lists answers; fix the row.")
                rows.append({
                    "id": get_field(qa, "id", str, at, allow_empty=False),
                    "title": title if isinstance(title, str) else "",
                    "context": context,
                    "question": get_field(qa, "question", str, at),
                    "answers": {"text": texts, "answer_start": starts},
                    WHERE: at,
                })
    if not rows:
        raise DataError(f"{path}: no questions found; point the config at a SQuAD file with data.")
    return rows


def read_local(paths: Sequence[str], fmt: str) -> list[dict]:
    if fmt == "squad_json":
        rows = []
        for path in paths:
            rows += read_squad_json(path)
        return rows
    if fmt in ("hub_jsonl", "hub_parquet"):
        return read_hub_files(paths, fmt)
    raise unsupported_format("squad_v2", fmt, FORMATS)


def dedup_key(row: dict) -> str:
    return normalise_text(row["context"])


def extract(text: str, reference: dict) -> str:
    return M.extract_span(text)


def extract_strict(text: str, reference: dict) -> str:
    return M.extract_span_strict(text)


def follows_format(text: str, reference: dict) -> bool:
    return M.squad_follows_format(text)


def score(extracted: str, reference: dict) -> dict:
    return M.squad_score(extracted, reference["answers"])


def _has_answer(row: dict) -> float:
    return 1.0 if row["reference"]["answers"] else 0.0


def statistics(name: str):
    if name in ("f1", "exact"):
        return mean_of(name)
    for group, weight in (("HasAns", _has_answer), ("NoAns", lambda row: 1.0 - _has_answer(row))):
        for metric in ("f1", "exact"):
            if name == f"{group}_{metric}":
                return ratio_of(lambda row, m=metric, w=weight: row["scores"][m] * w(row), weight)
    return None


TASK = TaskKind(
    kind="squad_v2",
    headline="f1",
    to_examples=to_examples,
    read_local=read_local,
    dedup_key=dedup_key,
    extract=extract,
    extract_strict=extract_strict,
    follows_format=follows_format,
    grading=(f"Strict: the whole response is the span, and only \"{ABSTAIN}\" abstains. Lenient: the first line "
             f"that is more than an introduction ('Answer:', 'Sure! Here is the answer:', a heading), or a later "
             f"verdict after a first line of reasoning, without prefixes, lead-ins ('Based on the provided "
             f"context,'), bullets, markdown or quotes; sentences saying "
             f"the context does not answer, 'Not mentioned.' and 'I don't know.' also abstain, while 'None' and "
             f"'unclear' are answers. A response with no answer at all (nothing after its thinking, or a bare "
             f"'Answer:') or one that hedges (an answer and an abstention, such as 'Paris, though the context does "
             f"not say so' or an abstention and then a guess; a second name or number on a later line; 'X or "
             f"possibly Y') is no abstention and scores 0 in both readings. Scored by the official SQuAD v2 exact "
             f"match and token F1 (an abstention is right on an unanswerable question)."),
    score=score,
    metrics=M.squad_metrics,
    statistics=statistics,
    dedup_description="normalised context (paragraph)",
    formats=FORMATS,
    display_names={"f1": "F1", "exact": "exact match", "HasAns_f1": "HasAns F1", "HasAns_exact": "HasAns exact match",
                   "NoAns_f1": "NoAns F1", "NoAns_exact": "NoAns exact match", "abstain_rate": "abstain rate"},
    example={"id": "56ddde6b9a695914005b9628", "title": "Normans",
             "context": "The Normans were the people who in the 10th and 11th centuries gave their name to "
                        "Normandy, a region in France.",
             "question": "In what country is Normandy located?",
             "answers": {"text": ["France"], "answer_start": [104]}},
)
