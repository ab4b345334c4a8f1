"""OpenMathInstruct-2: maths word problems with worked solutions ending in ``\\boxed{answer}``.

Hub schema (nvidia/OpenMathInstruct-2): ``{"problem", "generated_solution", "expected_answer",
"problem_source"}``, no id (one is made from the content) and no test split (the eval set is
carved from rows held out of training, disjoint by normalised problem text). The expected
answer is a string: an integer, a decimal, a fraction or a LaTeX expression.

Prompt: the problem and an instruction to put the final answer in ``\\boxed{}``. Completion: the
row's worked solution. Reference: ``{"answer": expected_answer}``. Extraction: the last
``\\boxed{…}``, else a final "answer is X", else the last number. Metrics: exact match after
maths-aware normalisation (headline), absolute error on numeric answers, parse rate.
"""

from __future__ import annotations

from typing import Sequence

from ftmatrix import metrics as M
from ftmatrix.bootstrap import mean_of
from ftmatrix.data import (assistant_message, content_id, get_field, normalise_text, read_hub_files,
                           unsupported_format, user_message, where_of)
from ftmatrix.tasks.base import TaskKind

FORMATS = ("hub_jsonl", "hub_parquet")
INSTRUCTION = "Solve the problem. Put the final answer in \\boxed{}."


def build_prompt(problem: str) -> str:
    return f"{problem.strip()}\n\n{INSTRUCTION}"


def to_examples(rows: Sequence[dict], where: str) -> list[dict]:
    examples = []
    for number, row in enumerate(rows, start=1):
        at = where_of(row, f"{where}, row {number}") if isinstance(row, dict) else f"{where}, row {number}"
        problem = get_field(row, "problem", str, at, allow_empty=False)
        solution = get_field(row, "generated_solution", str, at)
        answer = get_field(row, "expected_answer", str, at)
        examples.append({
            "id": content_id("om", problem, solution, answer),
            "prompt": user_message(build_prompt(problem)),
            "completion": assistant_message(solution),
            "reference": {"answer": answer},
        })
    return examples


def drop_reason(row: dict) -> str | None:
    if not M.normalize_math_answer(row["expected_answer"]):
        return "empty expected_answer"
    if M.last_boxed(row["generated_solution"]) is None:
        return "generated_solution has no \\boxed{} final answer"
    return None


def read_local(paths: Sequence[str], fmt: str) -> list[dict]:
    if fmt in FORMATS:
        return read_hub_files(paths, fmt)
    raise unsupported_format("openmath", fmt, FORMATS)


def dedup_key(row: dict) -> str:
    return normalise_text(row["problem"])


def extract(text: str, reference: dict) -> str:
    return M.extract_math_answer(text)


def extract_strict(text: str, reference: dict) -> str:
    return M.extract_math_answer_strict(text)


def follows_format(text: str, reference: dict) -> bool:
    return M.math_follows_format(text)


def score(extracted: str, reference: dict) -> dict:
    return M.math_score(extracted, reference["answer"])


def statistics(name: str):
    if name == "exact_match":
        return mean_of("exact_match")
    if name == "abs_error_mean":
        return mean_of("abs_error")
    if name == "parse_rate":
        return mean_of("parsed")
    return None


TASK = TaskKind(
    kind="openmath",
    headline="exact_match",
    to_examples=to_examples,
    read_local=read_local,
    dedup_key=dedup_key,
    extract=extract,
    extract_strict=extract_strict,
    follows_format=follows_format,
    grading=("Strict: the answer in \\boxed{}; lenient: the boxed answer, else a final 'the answer is …', else "
             "the last number. Correct when it equals the expected answer after normalisation (units, "
             "thousands separators, 'x =', percentages; words such as 'thousand' or 'dozen' are no unit) or by "
             "math-verify's symbolic and numeric check (numbers agreeing to three significant figures as "
             "well); a response that boxes two different answers is wrong unless it corrects the first ('Wait, "
             "that's wrong … \\boxed{7}'), and one whose final box is cut off answers only the plain number it "
             "was writing."),
    score=score,
    metrics=M.math_metrics,
    statistics=statistics,
    drop_reason=drop_reason,
    content_ids=True,
    dedup_description="normalised problem text",
    formats=FORMATS,
    display_names={"exact_match": "exact match", "abs_error_mean": "mean absolute error",
                   "abs_error_median": "median absolute error", "parse_rate": "parse rate",
                   "answer_rate": "answer rate"},
    example={"problem": "A baker sells 3/4 of her 12 loaves. How many loaves does she sell?",
             "generated_solution": "She sells 12 * 3/4 = 9 loaves. The answer is \\boxed{9}.",
             "expected_answer": "9", "problem_source": "augmented_gsm8k"},
)
