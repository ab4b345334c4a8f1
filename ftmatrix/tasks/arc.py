"""ARC (AI2 Reasoning Challenge): multiple choice, answered with the choice's label.

Hub schema (allenai/ai2_arc): ``{"id", "question", "choices": {"text": [...], "label": [...]},
"answerKey"}``. Most questions have four choices labelled A–D; a few have three or five, and
some are labelled 1–4 instead: labels are kept as the dataset spells them.

Prompt: the question, one line per choice ("A. text"), and an instruction to answer with the
label only. Completion: the gold label ("C"). Reference: ``{"label", "labels", "choices"}``.
Metrics: macro-F1 over answer positions (headline), accuracy, and the share of outputs naming
no label of the question.
"""

from __future__ import annotations

from typing import Sequence

from ftmatrix import metrics as M
from ftmatrix.bootstrap import Vectorised, mean_of
from ftmatrix.data import (WHERE, assistant_message, get_field, get_str_list, normalise_text, read_hub_files,
                           read_jsonl_rows, unsupported_format, user_message, where_of)
from ftmatrix.errors import DataError
from ftmatrix.tasks.base import TaskKind

FORMATS = ("hub_jsonl", "hub_parquet", "arc_release")


def _or_list(labels: Sequence[str]) -> str:
    labels = list(labels)
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


def build_prompt(question: str, labels: Sequence[str], choices: Sequence[str]) -> str:
    lines = [question.strip(), ""]
    lines += [f"{label}. {text.strip()}" for label, text in zip(labels, choices)]
    lines += ["", f"Answer with the label of the correct choice ({_or_list(labels)}) and nothing else."]
    return "\n".join(lines)


def _choices(row: dict, where: str) -> tuple[list[str], list[str]]:
    choices = get_field(row, "choices", dict, where)
    texts = get_str_list(choices, "text", f"{where}, field 'choices'", min_items=2)
    labels = get_str_list(choices, "label", f"{where}, field 'choices'", min_items=2)
    if len(texts) != len(labels):
        raise DataError(f"{where}: field 'choices' has {len(texts)} texts but {len(labels)} labels; "
                        f"each choice needs one of each.")
    labels = [label.strip() for label in labels]
    if len(set(labels)) != len(labels):
        raise DataError(f"{where}: field 'choices.label' repeats a label ({labels}); labels must be distinct.")
    return texts, labels


def _check_readable(labels: Sequence[str], where: str) -> None:
    """Every label must be one the answer extraction reads back from a response that is just that
    label; otherwise the row could never be scored right ('10' among A–C, 'True'/'False')."""
    for label in labels:
        if M.extract_choice_label(label, labels) != label or M.extract_choice_label_strict(label, labels) != label:
            raise DataError(f"{where}: the choice label {label!r} (of {labels}) cannot be read back from an answer "
                            f"— labels must be single letters or digits (A–E, 1–5) — so the row could never be "
                            f"scored right; relabel its choices or remove the row.")


def to_examples(rows: Sequence[dict], where: str) -> list[dict]:
    examples = []
    for number, row in enumerate(rows, start=1):
        at = where_of(row, f"{where}, row {number}") if isinstance(row, dict) else f"{where}, row {number}"
        ident = get_field(row, "id", str, at, allow_empty=False)
        question = get_field(row, "question", str, at, allow_empty=False)
        texts, labels = _choices(row, at)
        answer = get_field(row, "answerKey", str, at, allow_empty=False).strip()
        if answer not in labels:
            raise DataError(f"{at}: field 'answerKey' is {answer!r}, which is not one of the choice labels "
                            f"{labels}; fix the row.")
        _check_readable(labels, at)
        examples.append({
            "id": ident,
            "prompt": user_message(build_prompt(question, labels, texts)),
            "completion": assistant_message(answer),
            "reference": {"label": answer, "labels": labels, "choices": texts},
        })
    return examples


def release_to_hub(row: dict, where: str) -> dict:
    """ARC's original nested row -> the hub's flat schema."""
    ident = get_field(row, "id", str, where, allow_empty=False)
    question = get_field(row, "question", dict, where)
    stem = get_field(question, "stem", str, f"{where}, field 'question'", allow_empty=False)
    choices = get_field(question, "choices", list, f"{where}, field 'question'")
    texts, labels = [], []
    for i, choice in enumerate(choices):
        at = f"{where}, field 'question.choices[{i}]'"
        texts.append(get_field(choice, "text", str, at))
        labels.append(get_field(choice, "label", str, at, allow_empty=False))
    return {"id": ident, "question": stem, "choices": {"text": texts, "label": labels},
            "answerKey": get_field(row, "answerKey", str, where, allow_empty=False), WHERE: where}


def read_local(paths: Sequence[str], fmt: str) -> list[dict]:
    if fmt == "arc_release":
        rows = []
        for path in paths:
            rows += [release_to_hub(row, row[WHERE]) for row in read_jsonl_rows(path)]
        return rows
    if fmt in ("hub_jsonl", "hub_parquet"):
        return read_hub_files(paths, fmt)
    raise unsupported_format("arc", fmt, FORMATS)


def dedup_key(row: dict) -> str:
    # Question and choices: ARC reuses generic stems ("Which is a chemical change?") with other
    # choices, and those are different questions.
    texts = row["choices"]["text"] if isinstance(row.get("choices"), dict) else []
    return normalise_text("\n".join([row["question"], *sorted(str(t) for t in texts)]))


def extract(text: str, reference: dict) -> str:
    return M.extract_choice_label(text, reference.get("labels") or M.DEFAULT_LABELS, reference.get("choices") or ())


def extract_strict(text: str, reference: dict) -> str:
    return M.extract_choice_label_strict(text, reference.get("labels") or M.DEFAULT_LABELS)


def follows_format(text: str, reference: dict) -> bool:
    return M.arc_follows_format(text, reference.get("labels") or M.DEFAULT_LABELS)


def score(extracted: str, reference: dict) -> dict:
    return M.arc_score(extracted, reference)


def statistics(name: str):
    if name == "macro_f1":
        return Vectorised(M.MacroF1Statistic.from_rows, name="macro_f1")
    if name == "accuracy":
        return mean_of("correct")
    if name == "no_label_rate":
        return mean_of("no_label")
    return None


TASK = TaskKind(
    kind="arc",
    headline="macro_f1",
    correctness="accuracy",
    to_examples=to_examples,
    read_local=read_local,
    dedup_key=dedup_key,
    extract=extract,
    extract_strict=extract_strict,
    follows_format=follows_format,
    grading=("Strict: the response must be one of the question's labels and nothing else. Lenient: the label "
             "the response commits to — its \\boxed{} answers naming a label or a choice's text (unless a later "
             "sentence corrects them), an explicit 'the answer is C', a conclusion after reasoning ('D is wrong, "
             "so B'), a leading or lone label, a single option mentioned, or the text of a choice; labels it sets "
             "aside ('not B', 'B is wrong') do not count, and a response offering several labels ('C or D', "
             "'\\boxed{B} or \\boxed{C}', 'B or maybe C') names none. Correct when that label is the gold one."),
    score=score,
    metrics=M.arc_metrics,
    statistics=statistics,
    dedup_description="normalised question and choice texts",
    formats=FORMATS,
    display_names={"macro_f1": "macro-F1", "accuracy": "accuracy", "no_label_rate": "no-label rate"},
    example={"id": "Mercury_7175875",
             "question": "An astronomer observes that a planet rotates faster after a meteorite impact. "
                         "Which is the most likely effect of this increase in rotation?",
             "choices": {"text": ["Planetary density will decrease.", "Planetary years will become longer.",
                                  "Planetary days will become shorter.", "Planetary gravity will become stronger."],
                         "label": ["A", "B", "C", "D"]},
             "answerKey": "C"},
)
