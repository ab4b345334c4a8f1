"""The files that cross a stage, one class each: the writer builds the record and writes it,
every reader reads it back through the same class.

=======================  ==========================================================  ===============
record                   file                                                        written by
=======================  ==========================================================  ===============
``TaskMeta``             ``data/<study>/tasks/<task>/meta.json``                     prepare_task
``Decontamination``      ``data/<study>/decontaminated/<task>/report.json``          decontaminate_task
``ModelManifest``        ``data/<study>/models/<model>/manifest.json``               download_model,
                                                                                     link_model,
                                                                                     build_model
``TrainMetrics``         ``results/<study>/train/<variant>/train_metrics.json``      train_variant
``GenerationRecord``     ``results/<study>/eval/<cell>/generation.json``             evaluate_cell
``GenerationRow``        one line of ``results/<study>/eval/<cell>/generations.jsonl`` evaluate_cell
``TimingRecord``         ``results/<study>/eval/<cell>/timing/round<r>.json``        time_round
``CellMetrics``          ``results/<study>/eval/<cell>/metrics.json``                score_cell
=======================  ==========================================================  ===============

The JSON keys are the field names. ``read`` checks that every key is there with a value of
the declared type and raises a DataError naming the file, the key and the command that
writes the file again; a key the writer leaves out where it does not apply is declared with
``optional()`` and reads back as None. So a key renamed on one side fails at once, instead
of leaving a column of the matrix empty.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ftmatrix.errors import DataError


def optional(default=None):
    """A key the writer leaves out where it does not apply (reads back as None)."""
    return field(default=default, metadata={"omit_none": True})


class _Problem(Exception):
    """A key of a record is missing or has the wrong type (``key`` is its dotted path)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key!r} {problem}")
        self.key = key


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _is_record(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


def _convert(value, hint, key: str):
    """``value`` (parsed JSON) checked against the annotation ``hint``; nested records are built."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        (hint,) = options  # only "T | None" is used
        origin = typing.get_origin(hint)
    if _is_record(hint):
        if not isinstance(value, dict):
            raise _Problem(key, f"must be a JSON object, got {_type_name(value)}")
        return hint._from_json(value, prefix=f"{key}.")
    base = origin or hint
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _wrong(key, "a number", value)
    if base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok else _wrong(key, "an integer", value)
    if base is bool:
        return value if isinstance(value, bool) else _wrong(key, "true or false", value)
    if base is str:
        return value if isinstance(value, str) else _wrong(key, "a string", value)
    if base is list:
        return value if isinstance(value, list) else _wrong(key, "a list", value)
    if base is dict:
        return value if isinstance(value, dict) else _wrong(key, "a JSON object", value)
    raise TypeError(f"records: no check for the annotation {hint!r} of {key!r}")


def _wrong(key: str, expected: str, value):
    raise _Problem(key, f"must be {expected}, got {_type_name(value)} ({str(value)[:40]!r})")


def _to_json(value):
    if isinstance(value, Record):
        return value.to_json()
    return value


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@dataclass
class Record:
    """The shared behaviour: ``to_json``, ``write``, ``from_json``, ``read`` with keyed errors."""

    WHAT: ClassVar[str] = "record"
    WRITTEN_BY: ClassVar[str] = ""

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _to_json(value)
        return out

    def write(self, path: str | Path) -> None:
        from ftmatrix.io import write_json

        write_json(path, self.to_json())

    @classmethod
    def _from_json(cls, data: dict, prefix: str = ""):
        hints = _hints(cls)
        values = {}
        for f in fields(cls):
            key = prefix + f.name
            if f.name not in data:
                if f.metadata.get("omit_none"):
                    values[f.name] = f.default
                    continue
                raise _Problem(key, "is missing")
            values[f.name] = _convert(data[f.name], hints[f.name], key)
        record = cls(**values)
        record._check(prefix)
        return record

    def _check(self, prefix: str) -> None:
        """Checks beyond the field types (raise _Problem); none by default."""

    @classmethod
    def fix(cls, path) -> str:
        """The command that writes the file again."""
        return (f"write it again with `snakemake --cores all --force {path}` (with the study's --configfile; "
                f"rule {cls.WRITTEN_BY})")

    @classmethod
    def from_json(cls, data, where: str | Path, file: str | Path | None = None):
        """The record from parsed JSON; ``where`` names the file (and line) in errors, ``file`` the
        file to write again when that is not ``where`` itself."""
        file = where if file is None else file
        if not isinstance(data, dict):
            raise DataError(f"{where}: the {cls.WHAT} must be a JSON object, got {_type_name(data)}; "
                            f"{cls.fix(file)}.")
        try:
            return cls._from_json(data)
        except _Problem as problem:
            raise DataError(f"{where}: the {cls.WHAT} key {problem}; it was not written by this version of the "
                            f"pipeline — {cls.fix(file)}.") from None

    @classmethod
    def read(cls, path: str | Path):
        from ftmatrix.io import read_json

        try:
            data = read_json(path)
        except DataError as exc:
            raise DataError(f"{exc} The {cls.WHAT}: {cls.fix(path)}.") from None
        return cls.from_json(data, path)


# --------------------------------------------------------------------------- data stage


@dataclass
class TaskMeta(Record):
    """What prepare_task wrote for one task (ftmatrix.data.prepare_task)."""

    WHAT: ClassVar[str] = "task meta"
    WRITTEN_BY: ClassVar[str] = "prepare_task"

    task: str
    kind: str
    source: dict                 # how the source was read: type, id / files, revision …
    revision: str                # the resolved revision where known, else the configured one
    licence: str
    data_seed: int
    counts: dict                 # {'train'|'eval': {available, usable, requested, written}}
    dropped: dict                # {'train'|'eval': {reason: {count, examples}}}
    split: dict                  # {method, description, disjoint_by, order, seed, excluded_from_train}
    fingerprints: dict           # {'train.jsonl': sha256, 'eval.jsonl': sha256}
    provenance: dict

    FILES: ClassVar[tuple[str, str]] = ("train.jsonl", "eval.jsonl")

    def _check(self, prefix: str) -> None:
        for name in self.FILES:
            if not isinstance(self.fingerprints.get(name), str):
                raise _Problem(f"{prefix}fingerprints.{name}", "is missing")

    @property
    def train_fingerprint(self) -> str:
        return self.fingerprints["train.jsonl"]

    @property
    def eval_fingerprint(self) -> str:
        return self.fingerprints["eval.jsonl"]


@dataclass
class ModelManifest(Record):
    """A model folder and where it came from (ftmatrix.models: download, link or build)."""

    WHAT: ClassVar[str] = "model manifest"
    WRITTEN_BY: ClassVar[str] = "download_model, link_model or build_model"

    name: str
    source: str                  # hub, local or build
    path: str                    # the model folder (absolute when written)
    path_from_manifest: str      # the same folder relative to the manifest's (survives a moved tree)
    id: str
    revision: str                # as configured
    resolved_revision: str       # the hub commit, or a fingerprint of the local / built weights
    params: int
    trust_remote_code: bool
    use_safetensors: bool
    model_type: str | None
    architectures: list | None
    weights: list
    provenance: dict
    # sha256 of every file of the model folder that decides its behaviour (weights, configs,
    # tokenizer), and the class transformers builds from it (ftmatrix.models.check_model_folder)
    files_sha256: dict | None = optional()
    model_class: str | None = optional()
    # source: hub
    authenticated: bool | None = optional()
    download_s: float | None = optional()
    # source: build
    weights_sha256: str | None = optional()
    seed: int | None = optional()
    build: dict | None = optional()
    sizes: dict | None = optional()
    tokenizer: dict | None = optional()
    corpus: str | None = optional()
    corpus_sha256: str | None = optional()
    corpus_characters: int | None = optional()
    pretraining: dict | None = optional()
    threads: int | None = optional()
    wall_s: float | None = optional()


@dataclass
class Decontamination(Record):
    """What decontaminate_task compared and left out for one training task (ftmatrix.decontaminate)."""

    WHAT: ClassVar[str] = "decontamination report"
    WRITTEN_BY: ClassVar[str] = "decontaminate_task"

    task: str
    policy: str                  # drop, warn or stop
    ngram: int
    normalisation: str
    counts: dict                 # {'train'|'valid': {rows, overlapping, dropped, written}}
    overlapping_by_eval_task: dict   # {eval task: training + validation rows overlapping it}
    eval_rows_overlapping: dict  # {eval task: [ids of its eval rows some training row overlaps]}
    eval_tasks: dict             # {eval task: {rows, sha256}}
    template_ngrams: int         # runs ignored as a prompt's fixed wording
    overlaps: list               # the first overlapping rows: {split, id, where, eval_task, eval_id, reason, …}
    provenance: dict


# --------------------------------------------------------------------------- train stage


@dataclass
class TrainMetrics(Record):
    """What one training job did (ftmatrix.train.train_variant)."""

    WHAT: ClassVar[str] = "training metrics"
    WRITTEN_BY: ClassVar[str] = "train_variant"

    variant: dict                # {model, method, rank, train_task, seed}
    wall_time_s: float           # training seconds, summed over resumed runs
    wall_time_this_run_s: float
    job_time_s: float
    resumed_from_step: int | None
    train_tokens: int
    tokens_per_s: float | None
    steps: int
    epochs: float
    loss_curve: list             # [[step, loss], …]
    final_loss: float
    heldout_loss_before: float
    heldout_loss_after: float
    heldout_examples: int
    heldout_examples_used: int
    peak_memory_mb: float
    peak_memory_kind: str
    trainable_params: int
    total_params: int
    device: str
    precision: str
    threads: int
    attn_implementation: str
    padding_free: bool
    batching: dict
    learning_rate: float
    lora: dict | None            # {r, lora_alpha, use_rslora, dropout, target_modules}; null for full
    enable_thinking: bool
    train_examples: int
    train_examples_used: int
    truncated_examples: int
    dropped_examples: int
    max_length: int
    settings_hash: str
    provenance: dict             # ftmatrix.provenance.record(…, device=device_info(), …)
    # Why the run diverged (a non-finite loss or gradient norm): its weights are not kept, its
    # held-out loss after is infinite, and the learning-rate selection never picks it.
    diverged: str | None = optional()

    @property
    def hardware(self) -> dict:
        """The machine the training ran on ({'device', 'gpu', 'platform', …})."""
        return {"device": self.device, "gpu": None, **(self.provenance.get("device") or {})}


# --------------------------------------------------------------------------- evaluate stage


@dataclass
class GenerationRow(Record):
    """One sample of generations.jsonl (ftmatrix.evaluate; definitions in its module doc)."""

    WHAT: ClassVar[str] = "generation row"
    WRITTEN_BY: ClassVar[str] = "evaluate_cell"

    id: str
    prompt: str                  # the rendered prompt
    generated: str
    input_tokens: int
    output_tokens: int
    hit_limit: bool
    latency_s: float | None      # null for a sample that was not timed
    ttft_s: float | None
    tpot_s: float | None
    timed_matches: bool | None
    # only where the timed pass's text differs from the quality pass's
    timed_generated: str | None = optional()
    timed_output_tokens: int | None = optional()
    # endpoint cells (ftmatrix.endpoint): why the server stopped, the attempts the request took,
    # and for a sample that failed after every retry, why (it has no text and is not scored)
    finish_reason: str | None = optional()
    attempts: int | None = optional()
    error: str | None = optional()


@dataclass
class Decoding(Record):
    WHAT: ClassVar[str] = "decoding settings"

    do_sample: bool
    num_beams: int
    stop_tokens: list
    stop_token_ids: list


@dataclass
class GenerationRecord(Record):
    """How one cell was generated, and a summary (ftmatrix.evaluate.evaluate_cell)."""

    WHAT: ClassVar[str] = "generation record"
    WRITTEN_BY: ClassVar[str] = "evaluate_cell"

    cell: str                    # the cell's path below results/<study>/eval/
    model: dict                  # the manifest's name, id, revision, resolved_revision, path, params, …
    method: str
    trained_dir: str | None
    adapter: str | None
    merge_lora: bool | None      # LoRA cells only
    enable_thinking: bool
    precision: str
    precision_requested: str
    device: str
    threads: int
    batch_size: int
    max_new_tokens: int
    decoding: Decoding
    n: int
    n_timed: int
    latency_samples: int | None
    warmup: int
    timed_mismatches: int
    hit_limit: int
    generated_this_run: int
    resumed_samples: int
    load_s: float
    tokenize_s: float
    wall_s: float                # seconds of generation (quality and timed passes)
    quality_pass_s: float
    timed_pass_s: float
    samples_per_s: float | None
    provenance: dict
    # The engine that generated the texts (ftmatrix.engines): transformers, openai.
    engine: str = "transformers"
    # Endpoint cells only: the endpoint without its key (ftmatrix.engines.openai_endpoint.Endpoint
    # .describe), the samples that failed after every retry, and the tokens billed with their cost.
    endpoint: dict | None = optional()
    failed: int | None = optional()
    usage: dict | None = optional()

    @property
    def hardware(self) -> dict:
        """The machine the generation ran on ({'device', 'gpu', 'platform', …})."""
        return {"device": self.device, "gpu": None, **(self.provenance.get("device") or {})}


# --------------------------------------------------------------------------- timing


@dataclass
class TimedSample(Record):
    """One sample timed at batch size 1 in one round (ftmatrix.timing; definitions in ftmatrix.evaluate)."""

    WHAT: ClassVar[str] = "timed sample"
    WRITTEN_BY: ClassVar[str] = "time_round"

    id: str
    output_tokens: int
    hit_limit: bool
    latency_s: float
    ttft_s: float
    tpot_s: float | None         # null when only one token was generated
    generated: str               # compared with the quality pass's text by score_cell


@dataclass
class TimingRecord(Record):
    """One cell timed in one round (ftmatrix.timing.time_round)."""

    WHAT: ClassVar[str] = "timing record"
    WRITTEN_BY: ClassVar[str] = "time_round"

    cell: str
    round: int                   # 1-based
    rounds: int                  # evaluate.timing_rounds
    position: int                # the cell's place in this round's order (1-based)
    cells_in_round: int
    model: dict                  # the manifest's name, id, resolved_revision, params
    method: str
    adapter: str | None
    merge_lora: bool | None      # LoRA cells only
    enable_thinking: bool
    precision: str
    device: str
    threads: int
    max_new_tokens: int
    latency_samples: int | None
    warmup: int
    load_s: float                # loading the variant (0 for its second and later cells in the round)
    timed_s: float               # the timed generations, warm-up excluded
    started_at: float            # Unix time
    finished_at: float
    load_average: list           # the machine's 1-minute load average before and after the cell
    samples: list                # TimedSample objects, in the eval file's order
    provenance: dict
    engine: str = "transformers"  # what timed the samples (evaluate.timing_engine): transformers, vllm

    def _check(self, prefix: str) -> None:
        for number, sample in enumerate(self.samples):
            if not isinstance(sample, dict):
                raise _Problem(f"{prefix}samples[{number}]", "must be a JSON object")
            TimedSample._from_json(sample, prefix=f"{prefix}samples[{number}].")


# --------------------------------------------------------------------------- scoring


@dataclass
class Headline(Record):
    WHAT: ClassVar[str] = "headline"

    name: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    resamples: int
    seed: int
    higher_is_better: bool


@dataclass
class LatencySummary(Record):
    """Latency over the timed samples; token counts over all samples (ftmatrix.scoring)."""

    WHAT: ClassVar[str] = "latency summary"

    n_timed: int
    mean_s: float | None
    median_s: float | None
    p95_s: float | None
    ttft_mean_s: float | None
    ttft_median_s: float | None
    tpot_mean_s: float | None
    tpot_median_s: float | None
    output_tokens_mean: float | None
    input_tokens_mean: float | None
    output_tokens_timed_mean: float | None
    # Timing rounds (ftmatrix.timing): intervals over rounds and samples (hierarchical bootstrap).
    rounds: int                  # rounds each timed sample was timed in
    round_medians_s: list        # the median latency of each round
    mean_ci_low_s: float | None
    mean_ci_high_s: float | None
    ttft_mean_ci_low_s: float | None
    ttft_mean_ci_high_s: float | None
    tpot_s: float | None         # Σ(latency − TTFT) / Σ(output tokens − 1) over the timed samples
    tpot_ci_low_s: float | None
    tpot_ci_high_s: float | None
    output_tokens_ci_low: float | None    # of output_tokens_mean, over all samples
    output_tokens_ci_high: float | None
    timed_mismatches: int        # timed samples whose text differs from the quality pass's in some round
    device: str | None           # where the rounds ran
    # What timed the samples: the timing rounds' engine (evaluate.timing_engine), or the quality
    # pass's where it timed them itself (an endpoint's streamed requests: openai); None if untimed.
    engine: str | None = None


@dataclass
class CellMetrics(Record):
    """One cell's scores (ftmatrix.scoring.score_cell).

    In the file, ``generation`` is the generation record without its provenance, which sits
    in ``provenance.generation`` instead (read back into the record here)."""

    WHAT: ClassVar[str] = "cell metrics"
    WRITTEN_BY: ClassVar[str] = "score_cell"

    cell: dict                   # {model, method, rank, train_task, seed, eval_task}
    task: str
    task_kind: str
    n: int
    headline: Headline
    metrics: dict                # every corpus metric of the task (null where undefined)
    ci: dict                     # {metric: [low, high]}
    latency: LatencySummary
    hit_limit: int
    hit_limit_pct: float
    generation: GenerationRecord
    provenance: dict             # ftmatrix.provenance.record(…, generation=…, eval_file=…, …)
    # The reading of the answers that headline, metrics and ci use (evaluate.grading), both
    # readings' {metrics, ci} ({'lenient': …, 'strict': …}), and the percentage of responses
    # in the form the prompt asked for, with its interval.
    grading: str | None = optional()
    readings: dict | None = optional()
    format_rate: float | None = optional()
    format_rate_ci: list | None = optional()

    def to_json(self) -> dict:
        out = super().to_json()
        out["generation"].pop("provenance")
        return out

    @classmethod
    def _from_json(cls, data: dict, prefix: str = ""):
        generation, prov = data.get("generation"), data.get("provenance")
        if isinstance(generation, dict):
            if "provenance" not in data:
                raise _Problem(f"{prefix}provenance", "is missing")
            if not isinstance(prov, dict):
                _wrong(f"{prefix}provenance", "a JSON object", prov)
            if "generation" not in prov:
                raise _Problem(f"{prefix}provenance.generation", "is missing")
            data = {**data, "generation": {**generation, "provenance": prov["generation"]}}
        return super()._from_json(data, prefix)


__all__ = ["Record", "TaskMeta", "Decontamination", "ModelManifest", "TrainMetrics", "GenerationRow", "GenerationRecord",
           "Decoding", "Headline", "LatencySummary", "CellMetrics", "TimedSample", "TimingRecord", "optional"]
