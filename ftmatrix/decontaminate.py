"""Decontamination: no evaluated row, however disguised, is trained on.

One job per task the study trains on (rule decontaminate_task) compares its training and
validation rows with every eval row of every task of the study — its own and the others' (two
tasks drawn from one source with different sizes share rows) — and writes the files the
training reads::

    data/<study>/decontaminated/<task>/train.jsonl   the training rows that overlap no eval row
    data/<study>/decontaminated/<task>/valid.jsonl   the same for the validation rows
    data/<study>/decontaminated/<task>/report.json   counts and the overlapping rows (Decontamination)

Two rows overlap when, after normalisation (Unicode NFKC, case folded, punctuation and
zero-width / format characters removed, whitespace collapsed), their prompts are the same text,
or they share a run of ``ngram`` words (13 by default, the length the GPT-3 report used for its
contamination analysis) in a prompt or completion message. Runs that occur in at least half of
the rows of one file (and in at least three) are a prompt's fixed wording, shared by every row
of a task (found as runs of six words, so that an instruction shorter than ``ngram`` is found
too): their words are taken out before the runs are compared, so neither the wording nor
a run straddling it and a word of the row's own (a choice's label and text) counts as overlap.

The policy (``data.decontamination.policy``): ``drop`` leaves overlapping training and
validation rows out, ``warn`` keeps them with a warning, ``stop`` stops the study naming them.
Eval rows are never dropped: the report lists those that overlap.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from ftmatrix.errors import DataError
from ftmatrix.io import atomic_path, file_sha256
from ftmatrix.records import Decontamination

log = logging.getLogger("ftmatrix.decontaminate")

LISTED = 50           # overlapping rows listed by id in the report (all are counted)
TEMPLATE_RUN = 6      # the length of the runs that find a prompt's fixed wording
NORMALISATION = ("Unicode NFKC; format characters (zero-width spaces and joiners, soft hyphens, BOM) removed; "
                 "punctuation replaced by spaces; case folded; whitespace collapsed")


def normalise(text: str) -> str:
    """Text as compared: NFKC, format characters dropped, punctuation as spaces, case folded,
    whitespace collapsed."""
    out = []
    for char in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        out.append(" " if category.startswith("P") else char)
    return " ".join("".join(out).casefold().split())


def _texts(row: dict, key: str) -> list[str]:
    messages = row.get(key) or []
    return [m.get("content", "") for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]


def ngrams(text: str, n: int) -> set[str]:
    words = text.split()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


class Row:
    """One row as compared: its id, where it is, its normalised prompt and the words of each
    message; ``grams`` its n-grams, then (``mask``) only those of its own wording."""

    def __init__(self, row: dict, where: str, n: int):
        self.id = str(row.get("id"))
        self.where = where
        self.n = n
        self.prompt = normalise("\n".join(_texts(row, "prompt")))
        self.messages = [normalise(text).split() for text in _texts(row, "prompt") + _texts(row, "completion")]
        self.grams: set[str] = set()
        for words in self.messages:
            self.grams |= ngrams(" ".join(words), n)

    def short_grams(self) -> set[str]:
        return set().union(*(ngrams(" ".join(words), TEMPLATE_RUN) for words in self.messages))

    def mask(self, template: set[str]) -> None:
        """Keep the n-grams of the row's own wording: words inside a run of the prompt's fixed
        wording (``template``: runs of TEMPLATE_RUN words) are taken out, and n-grams are formed
        within what is left between them (so a run that straddles the fixed wording and a few
        words of the row's own is no evidence either)."""
        n, k, self.grams = self.n, TEMPLATE_RUN, set()
        for words in self.messages:
            fixed = [False] * len(words)
            for i in range(len(words) - k + 1):
                if " ".join(words[i:i + k]) in template:
                    fixed[i:i + k] = [True] * k
            run: list[str] = []
            for word, is_fixed in zip([*words, ""], [*fixed, True]):
                if is_fixed:
                    self.grams |= ngrams(" ".join(run), n)
                    run = []
                else:
                    run.append(word)


def read_rows(path: str | Path, n: int) -> tuple[list[Row], list[bytes]]:
    """The rows of an example file (and its raw lines, written back unchanged when kept)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; run the data stage (rule prepare_task).") from None
    rows, lines = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}, line {number}: not a JSON row ({exc}); write it again with "
                            f"`snakemake --cores all --forcerun prepare_task {path}`.") from None
        rows.append(Row(row, f"{path}, line {number}", n))
        lines.append(line)
    return rows, lines


def template_grams(files: Iterable[Sequence[Row]], candidates: set[str]) -> set[str]:
    """Candidate runs of TEMPLATE_RUN words found in at least half of the rows (and in three or
    more) of one file: the fixed wording of a task's prompt."""
    template: set[str] = set()
    for rows in files:
        counts: dict[str, int] = defaultdict(int)
        for row in rows:
            for gram in row.short_grams() & candidates:
                counts[gram] += 1
        threshold = max(3, (len(rows) + 1) // 2)
        template |= {gram for gram, count in counts.items() if count >= threshold}
    return template


def decontaminate_task(task: str, train_file, valid_file, eval_files: dict, out_train, out_valid, report_file,
                       *, policy: str = "drop", n: int = 13) -> Decontamination:
    """Compare one task's training and validation rows with every eval row; write the kept rows
    and the report (see the module docstring). ``eval_files``: {eval task name: eval.jsonl}."""
    from ftmatrix import provenance

    if policy not in ("drop", "warn", "stop"):
        raise DataError(f"data.decontamination.policy is {policy!r}; use drop, warn or stop.")
    evals = {name: read_rows(path, n)[0] for name, path in sorted(eval_files.items())}
    splits = {"train": read_rows(train_file, n), "valid": read_rows(valid_file, n)}

    candidates = set().union(*(row.short_grams() for rows in evals.values() for row in rows))
    template = template_grams([*evals.values(), *(rows for rows, _ in splits.values())], candidates)
    eval_grams: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    eval_prompts: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    for name, rows in evals.items():
        for row in rows:
            row.mask(template)
            eval_prompts[row.prompt].append((name, row))
            for gram in row.grams:
                eval_grams[gram].append((name, row))
    for rows, _ in splits.values():
        for row in rows:
            row.mask(template)

    overlaps, by_eval_task, flagged_eval = [], defaultdict(int), defaultdict(set)
    kept: dict[str, list[bytes]] = {}
    counts = {}
    for split, (rows, lines) in splits.items():
        kept[split] = []
        overlapping = 0
        for row, line in zip(rows, lines):
            match = None
            if row.prompt and row.prompt in eval_prompts:
                match = (eval_prompts[row.prompt][0], "same normalised prompt", None)
            else:
                for gram in sorted(row.grams):
                    if gram in eval_grams:
                        match = (eval_grams[gram][0], f"shares {n} words", gram)
                        break
            if match is None:
                kept[split].append(line)
                continue
            (eval_task, eval_row), reason, gram = match
            overlapping += 1
            by_eval_task[eval_task] += 1
            flagged_eval[eval_task].add(eval_row.id)
            if len(overlaps) < LISTED:
                overlaps.append({"split": split, "id": row.id, "where": row.where, "eval_task": eval_task,
                                 "eval_id": eval_row.id, "eval_where": eval_row.where, "reason": reason,
                                 **({"words": gram} if gram else {})})
            if policy == "warn":
                kept[split].append(line)
        counts[split] = {"rows": len(rows), "overlapping": overlapping,
                         "dropped": overlapping if policy == "drop" else 0, "written": len(kept[split])}

    total = sum(c["overlapping"] for c in counts.values())
    if total and policy == "stop":
        listed = "; ".join(f"{o['where']} (id {o['id']}) overlaps {o['eval_task']} eval row {o['eval_id']} "
                           f"({o['reason']})" for o in overlaps[:5])
        raise DataError(f"task {task}: {total} training/validation rows overlap eval rows (data.decontamination."
                        f"policy is stop): {listed}{' …' if total > 5 else ''}. Remove them from the source, or set "
                        f"data.decontamination.policy: drop to leave them out of training.")
    if not kept["train"]:
        raise DataError(f"task {task}: every training row overlaps an eval row ({counts['train']['rows']} rows); "
                        f"nothing is left to train on. Give this task training data apart from the evaluated rows.")
    if total:
        log.warning("task %s: %d training and %d validation rows overlap eval rows (%s); %s", task,
                    counts["train"]["overlapping"], counts["valid"]["overlapping"],
                    ", ".join(f"{k}: {v}" for k, v in sorted(by_eval_task.items())),
                    "dropped" if policy == "drop" else "kept (policy warn)")
    for split, out in (("train", out_train), ("valid", out_valid)):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"".join(line + b"\n" for line in kept[split]))
    report = Decontamination(
        task=task, policy=policy, ngram=n, normalisation=NORMALISATION,
        counts=counts, overlapping_by_eval_task=dict(sorted(by_eval_task.items())),
        eval_rows_overlapping={k: sorted(v) for k, v in sorted(flagged_eval.items())},
        eval_tasks={name: {"rows": len(rows), "sha256": file_sha256(eval_files[name])} for name, rows in evals.items()},
        template_ngrams=len(template), overlaps=overlaps,
        provenance=provenance.record(
            inputs={str(p): file_sha256(p) for p in (train_file, valid_file, *eval_files.values())},
            outputs={str(p): file_sha256(p) for p in (out_train, out_valid)}),
    )
    report.write(report_file)
    log.info("task %s: %d of %d training rows and %d of %d validation rows kept after comparing with %d eval "
             "rows of %d tasks (%d-word runs; %d template runs ignored)", task, counts["train"]["written"],
             counts["train"]["rows"], counts["valid"]["written"], counts["valid"]["rows"],
             sum(len(r) for r in evals.values()), len(evals), n, len(template))
    return report
