"""What every task kind provides. See ftmatrix/tasks/arc.py for a complete example.

A task kind is a module that ends with ``TASK = TaskKind(kind="…", …)``; the registry
(ftmatrix/tasks/__init__.py) finds it in this package or in a study's ``task_modules`` folder.

The example format (one JSON object per line in data/<study>/tasks/{task}/{train,eval}.jsonl)::

    {"id": str,
     "prompt": [{"role": "user", "content": str}, ...],      # chat messages, not rendered text
     "completion": [{"role": "assistant", "content": str}],  # what TRL trains on
     "reference": {...}}                                      # task-specific gold, read by scoring

The model's own chat template renders ``prompt`` (and ``completion``) at train and eval time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence


# eq=False: one object per kind, hashed and compared by identity (its dict fields are unhashable).
@dataclass(frozen=True, eq=False)
class TaskKind:
    kind: str
    # Name of the headline metric in ``metrics``' result (e.g. "macro_f1", "exact_match", "f1").
    headline: str
    # Hub-schema rows (list of dicts) -> examples. ``where`` names the file for error messages;
    # a row read from a file carries its own location under "_where" ("<file>, line N").
    to_examples: Callable[[Sequence[dict], str], list[dict]]
    # Read local files of a given format ("hub_jsonl", "hub_parquet", "arc_release", "squad_json")
    # into hub-schema rows. Raises DataError naming file, row and field.
    read_local: Callable[[Sequence[str], str], list[dict]]
    # Hub-schema row -> a normalised text used to keep train and eval disjoint (e.g. the
    # question or problem): eval rows never share it with training rows.
    dedup_key: Callable[[dict], str]
    # Generated text (+ the example's reference) -> extracted answer (str; "" for none/abstain):
    # the *lenient* reading, a best effort from whatever the model wrote.
    extract: Callable[[str, dict], str]
    # Extracted answer + reference -> per-sample scores {name: float | None}; never raises.
    # Rates are 0 or 100 per sample (F1: 0–100), so their means are percentages.
    score: Callable[[str, dict], dict]
    # Per-sample rows (each with "extracted", "reference", "scores") -> corpus metrics {name: float}.
    # Must include ``headline``. The bootstrap calls it on resamples, so keep it pure. A metric
    # undefined on the rows given (e.g. none of them) is None.
    metrics: Callable[[Sequence[dict]], dict]
    # Does a higher headline value mean better? (all current headlines: True)
    higher_is_better: bool = True
    # Where the headline can rise without more answers being right, the metric that counts right
    # answers (higher is better), a key of ``metrics``' result: a win on the headline is reported
    # as one only when this metric agrees (ftmatrix.analysis.correctness_check). ARC: accuracy
    # (macro-F1 also rises when answers merely spread over more labels). None: the headline counts
    # right answers itself (exact match; SQuAD v2's F1, where abstaining on an unanswerable
    # question is a right answer).
    correctness: str | None = None
    # Metric name -> a vectorised bootstrap statistic (ftmatrix.bootstrap.Vectorised), or None
    # where only ``metrics`` on each resample computes it. See ftmatrix.bootstrap.metric_ci.
    statistics: Callable[[str], object] | None = None
    # Hub-schema row -> None to keep it, or the reason it cannot be used (recorded in meta.json).
    drop_reason: Callable[[dict], str | None] | None = None
    # True when ids are derived from the content (no id in the source): an identical row is
    # then a harmless duplicate that is dropped, not an error.
    content_ids: bool = False
    # What ``dedup_key`` compares, in words (recorded in meta.json).
    dedup_description: str = "normalised question text"
    # Local file formats ``read_local`` accepts (a task's ``source.format`` must be one of them).
    formats: tuple = ("hub_jsonl", "hub_parquet")
    # Metric name -> how the journal and figures name it ("macro_f1" -> "macro-F1"). A metric
    # left out is shown with its underscores as spaces.
    display_names: dict = field(default_factory=dict)
    # One row of the source's schema, as ``read_local`` returns it: documents the schema, and the
    # tests of every kind run on it (its completion, extracted and scored, must score full marks).
    example: dict = field(default_factory=dict)
    # The *strict* reading: the answer only when it is in exactly the form the prompt asks for
    # (scored by ``score`` like the lenient one). None: the kind has one reading, strict = lenient.
    extract_strict: Callable[[str, dict], str] | None = None
    # Generated text + reference -> is the response in the form the prompt asks for? None: it
    # is when the strict reading equals the lenient one.
    follows_format: Callable[[str, dict], bool] | None = None
    # How an answer is extracted and what counts as correct, in two or three sentences (the
    # journal's setup section quotes it for each task).
    grading: str = ""

    def read_strict(self, text: str, reference: dict) -> str:
        return (self.extract_strict or self.extract)(text, reference)

    def in_format(self, text: str, reference: dict) -> bool:
        if self.follows_format is not None:
            return bool(self.follows_format(text, reference))
        return self.read_strict(text, reference) == self.extract(text, reference)
