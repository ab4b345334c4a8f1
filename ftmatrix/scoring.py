"""Stage 3b: score one cell from its generations alone.

``score_cell`` reads ``generations.jsonl`` (what the model wrote, with timing),
``generation.json`` (how it was generated) and the eval file (the gold references),
and writes:

* ``predictions.jsonl``: each generation row plus ``reference``, both readings of the
  answer — ``lenient`` and ``strict``, each ``{extracted, scores}`` (per-sample, from the
  task module) — ``follows_format`` (the response is in the form the prompt asked for), and
  ``extracted``/``scores`` of the reading the headline uses (``evaluate.grading``);
* ``metrics.json``: the task's corpus metrics under that reading, the headline with a
  seeded bootstrap confidence interval, intervals for the other rate metrics, both readings'
  metrics and intervals (``readings``), the format-compliance rate with its interval, a
  latency summary over the timed samples, the number of outputs that hit the length limit,
  the generation summary and provenance.

Nothing here generates, so a change to answer extraction or a metric re-scores every
cell without running a model again. Rate metrics are in percent (0–100), errors in the
answer's own units, times in seconds.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from ftmatrix import grid, io, provenance
from ftmatrix.errors import DataError
from ftmatrix.numeric import finite
from ftmatrix.records import CellMetrics, GenerationRecord, GenerationRow, Headline, LatencySummary

log = logging.getLogger("ftmatrix.scoring")


def _is_count(name: str, value) -> bool:
    """Counts (n, total, HasAns_total, n_parsed) get no confidence interval."""
    return (name in ("n", "total") or name.startswith("n_") or name.endswith(("_total", "_count"))
            or isinstance(value, bool))


def _clean(value):
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(value, float) and not finite(value):
        return None
    return value


def join_rows(generations: Sequence[dict], eval_rows: Sequence[dict], generations_file, eval_file) -> list[dict]:
    """Pair each generation with its gold reference, in the eval file's order; every id exactly once."""
    by_id: dict[str, dict] = {}
    for number, row in enumerate(generations, start=1):
        GenerationRow.from_json(row, f"{generations_file}, line {number}", file=generations_file)
        if row["id"] in by_id:
            raise DataError(f"{generations_file}, line {number}: the id {row['id']!r} appears twice; "
                            f"rerun evaluate_cell for the cell.")
        by_id[row["id"]] = row
    eval_ids = [row["id"] for row in eval_rows]
    absent = [i for i in eval_ids if i not in by_id]
    extra = sorted(set(by_id) - set(eval_ids))
    if absent or extra:
        parts = []
        if absent:
            parts.append(f"{len(absent)} eval id(s) have no generation (first: {absent[0]!r})")
        if extra:
            parts.append(f"{len(extra)} generation(s) have no eval row (first: {extra[0]!r})")
        raise DataError(f"{generations_file} does not match {eval_file}: {'; '.join(parts)}. The eval file "
                        f"changed since generation; rerun evaluate_cell for the cell.")
    joined = []
    for row in eval_rows:
        if "reference" not in row:
            raise DataError(f"{eval_file}: the row with id {row['id']!r} has no 'reference'; rerun the data stage.")
        joined.append({**by_id[row["id"]], "reference": row["reference"]})
    return joined


GRADINGS = ("lenient", "strict")


def score_rows(task, rows: Sequence[dict], grading: str = "lenient") -> list[dict]:
    """Add both readings of the answer to each joined row — ``lenient`` (task.extract) and
    ``strict`` (task.read_strict), each ``{extracted, scores}`` — ``follows_format``, and the
    ``extracted`` and ``scores`` of the reading ``grading`` names (what the headline uses).
    The task's extraction and scoring never raise."""
    if grading not in GRADINGS:
        raise ValueError(f"grading is {grading!r}; use one of {', '.join(GRADINGS)} (evaluate.grading)")
    out = []
    for row in rows:
        text = row["generated"] if isinstance(row["generated"], str) else ""
        reference = row["reference"]
        readings = {}
        for name, extract in (("lenient", task.extract), ("strict", task.read_strict)):
            extracted = extract(text, reference)
            scores = task.score(extracted, reference)
            readings[name] = {"extracted": extracted, "scores": {k: _clean(v) for k, v in scores.items()}}
        out.append({**row, **readings[grading], **readings, "follows_format": task.in_format(text, reference)})
    return out


def reading_rows(rows: Sequence[dict], grading: str) -> list[dict]:
    """The scored rows with ``extracted`` and ``scores`` of the reading ``grading``."""
    return [{**row, **row[grading]} for row in rows]


def format_rate(rows: Sequence[dict], *, resamples: int, seed: int, confidence: float):
    """(percentage of responses in the asked form, CI low, CI high)."""
    from ftmatrix.bootstrap import bootstrap_ci, mean_of

    value, low, high = bootstrap_ci(list(rows), mean_of(lambda row: 100.0 * bool(row["follows_format"])),
                                    resamples, seed, confidence)
    return _clean(value), _clean(low), _clean(high)


class _Memo:
    """task.metrics on one resample, computed once however many metrics need it.

    Used for metrics without a vectorised statistic. Every metric's bootstrap draws the
    same resamples (same seed, same rows), and a resample is identified by the identities
    of its rows, so each resample's metrics are computed once."""

    def __init__(self, metrics: Callable[[Sequence[dict]], dict]):
        self.metrics = metrics
        self.cache: dict[tuple, dict] = {}

    def __call__(self, rows: Sequence[dict]) -> dict:
        key = tuple(map(id, rows))
        if key not in self.cache:
            self.cache[key] = self.metrics(rows)
        return self.cache[key]


def confidence_intervals(task, rows: Sequence[dict], names: Sequence[str], *, resamples: int, seed: int,
                         confidence: float) -> dict[str, tuple[float | None, float | None, float | None]]:
    """{metric: (value, low, high)} by the seeded percentile bootstrap over samples: the task's
    vectorised statistic where it has one, its ``metrics`` on each resample otherwise."""
    from ftmatrix.bootstrap import bootstrap_ci

    memo = _Memo(task.metrics)
    vectorised = getattr(task, "statistics", None)
    rows = list(rows)
    out = {}
    for name in names:
        statistic = vectorised(name) if vectorised else None
        if statistic is None:
            def statistic(sample, name=name):
                value = memo(sample).get(name)
                return value if finite(value) else float("nan")

        value, low, high = bootstrap_ci(rows, statistic, resamples, seed, confidence)
        out[name] = (_clean(value), _clean(low), _clean(high))
    return out


def latency_summary(rows: Sequence[dict], *, rounds: int = 0, resamples: int = 1000, seed: int = 0,
                    confidence: float = 0.95, device: str | None = None,
                    engine: str | None = None) -> LatencySummary:
    """Latency over the timed samples (each timed in ``rounds`` rounds: intervals by the
    bootstrap over rounds and samples); token counts over all samples."""
    import numpy as np

    from ftmatrix.bootstrap import bootstrap_ci, hierarchical_ci, mean_of
    from ftmatrix.timing import round_medians

    # A sample timed without rounds (ftmatrix.evaluate's own timed pass) counts as one round.
    timed = [{**r, "latency_rounds_s": r.get("latency_rounds_s") or [r["latency_s"]],
              "ttft_rounds_s": r.get("ttft_rounds_s") or [r["ttft_s"]],
              "timed_output_tokens": r.get("timed_output_tokens") or r["output_tokens"]}
             for r in rows if finite(r.get("latency_s"))]
    rounds = max(rounds, 1) if timed else 0
    lat = np.array([r["latency_s"] for r in timed], dtype=float)
    ttft = np.array([r["ttft_s"] for r in timed], dtype=float)
    tpot = np.array([r["tpot_s"] for r in timed if finite(r["tpot_s"])], dtype=float)

    def stat(fn, values):
        return float(fn(values)) if len(values) else None

    def ci(table):
        if not len(timed):
            return None, None
        _, low, high = hierarchical_ci(np.array(table, dtype=float).T, resamples, seed, confidence)
        return low, high

    lat_low, lat_high = ci([r["latency_rounds_s"] for r in timed])
    ttft_low, ttft_high = ci([r["ttft_rounds_s"] for r in timed])
    # Time per further token, weighted by tokens: Σ(latency − TTFT) / Σ(tokens − 1), so that
    # mean latency = mean TTFT + mean further tokens × tpot_s exactly.
    further = np.array([max(r["timed_output_tokens"] - 1, 0) for r in timed], dtype=float)
    decode = np.array([[a - b for a, b in zip(r["latency_rounds_s"], r["ttft_rounds_s"])] for r in timed],
                      dtype=float)
    tpot_s = tpot_low = tpot_high = None
    if len(timed) and further.sum() > 0:
        from ftmatrix.bootstrap import _index_chunks, _interval, hierarchical_means, round_weights

        tpot_s = float(decode.sum() / decode.shape[1] / further.sum())
        rng = np.random.default_rng(seed)
        idx = np.concatenate(list(_index_chunks(rng, len(timed), resamples)))
        weights = round_weights(rng, decode.shape[1], resamples)
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = hierarchical_means(decode.T, idx, weights) / further[idx].mean(axis=1)
        tpot_low, tpot_high = _interval(dist, confidence)
    _, tok_low, tok_high = bootstrap_ci(list(rows), mean_of("output_tokens"), resamples, seed, confidence)

    return LatencySummary(
        n_timed=len(timed),
        mean_s=stat(np.mean, lat),
        median_s=stat(np.median, lat),
        p95_s=stat(lambda v: np.percentile(v, 95), lat),
        ttft_mean_s=stat(np.mean, ttft),
        ttft_median_s=stat(np.median, ttft),
        tpot_mean_s=stat(np.mean, tpot),
        tpot_median_s=stat(np.median, tpot),
        output_tokens_mean=stat(np.mean, np.array([r["output_tokens"] for r in rows], dtype=float)),
        input_tokens_mean=stat(np.mean, np.array([r["input_tokens"] for r in rows], dtype=float)),
        output_tokens_timed_mean=stat(np.mean, np.array([r["output_tokens"] for r in timed], dtype=float)),
        rounds=rounds,
        round_medians_s=round_medians(timed, rounds) if timed else [],
        mean_ci_low_s=lat_low, mean_ci_high_s=lat_high,
        ttft_mean_ci_low_s=ttft_low, ttft_mean_ci_high_s=ttft_high,
        tpot_s=tpot_s, tpot_ci_low_s=tpot_low, tpot_ci_high_s=tpot_high,
        output_tokens_ci_low=tok_low, output_tokens_ci_high=tok_high,
        timed_mismatches=sum(1 for r in timed if r.get("timed_matches") is False),
        device=device if timed else None,
        engine=engine if timed else None,
    )


def cell_columns(cell_path: str) -> dict:
    cell = grid.cell_from_path(cell_path)
    v = cell.variant
    return {"model": v.model, "method": v.method, "rank": v.rank, "train_task": v.train_task, "seed": v.seed,
            "eval_task": cell.eval_task}


def score_cell(settings: dict, generations_file, info_file, eval_file, predictions_file, metrics_file,
               config_hash: str | None, timing_files: Sequence = ()) -> CellMetrics:
    """Score one cell; write predictions_file and metrics_file. Returns the metrics record.

    ``settings``: ``task`` (the task's entry), the bootstrap's ``bootstrap_resamples``,
    ``bootstrap_seed`` and ``confidence``, and ``grading`` (from the validated config's
    ``evaluate``).
    ``timing_files``: the cell's timing rounds (ftmatrix.timing), none where nothing is timed."""
    from ftmatrix.tasks import get_task

    task_entry = settings["task"]
    task = get_task(task_entry["kind"])
    resamples = int(settings["bootstrap_resamples"])
    seed = int(settings["bootstrap_seed"])
    confidence = float(settings["confidence"])

    info = GenerationRecord.read(info_file)
    generations = io.read_jsonl(generations_file)
    eval_rows = io.read_jsonl(eval_file)
    if not eval_rows:
        raise DataError(f"{eval_file}: no evaluation rows; rerun the data stage for this task.")
    rows = join_rows(generations, eval_rows, generations_file, eval_file)
    rounds, timing_device, timing_engine = 0, None, info.engine
    if timing_files:
        from ftmatrix.timing import join_rounds

        rows, timing = join_rounds(rows, timing_files)
        rounds, timing_device, timing_engine = timing["rounds"], timing["records"][0].device, timing["engine"]
    # A sample the engine could not generate (an endpoint failing after every retry) has no answer
    # to score: it is left out, never scored as an empty answer, and the cell counts it
    # (generation.json's failed, the matrix's n_failed).
    failed = [r for r in rows if r.get("error")]
    rows = [r for r in rows if not r.get("error")]
    if not rows:
        raise DataError(f"{generations_file}: every sample failed to generate (first: {failed[0]['error']}); "
                        f"fix the endpoint and run the cell again — saved responses are kept.")
    grading = settings.get("grading", "lenient")   # evaluate.grading (the schema's default: lenient)
    rows = score_rows(task, rows, grading)

    readings = {}
    for reading in (grading, *[g for g in GRADINGS if g != grading]):
        view = rows if reading == grading else reading_rows(rows, reading)
        reading_metrics = {k: _clean(v) for k, v in task.metrics(view).items()}
        if task.headline not in reading_metrics:
            raise DataError(f"task kind {task.kind!r}: its metrics lack the headline {task.headline!r}.")
        ci_names = [task.headline] + [k for k, v in reading_metrics.items()
                                      if k != task.headline and finite(v) and not _is_count(k, v)]
        reading_cis = confidence_intervals(task, view, ci_names, resamples=resamples, seed=seed,
                                           confidence=confidence)
        readings[reading] = {"metrics": reading_metrics,
                             "ci": {name: [lo, hi] for name, (_, lo, hi) in reading_cis.items()}}
    metrics = readings[grading]["metrics"]
    low, high = readings[grading]["ci"][task.headline]
    in_format, in_format_low, in_format_high = format_rate(rows, resamples=resamples, seed=seed,
                                                           confidence=confidence)

    io.write_jsonl(predictions_file, rows)
    hit_limit = sum(1 for r in rows if r["hit_limit"])
    document = CellMetrics(
        cell=cell_columns(info.cell),
        task=task_entry["name"],
        task_kind=task.kind,
        n=len(rows),
        headline=Headline(name=task.headline, value=metrics[task.headline], ci_low=low, ci_high=high,
                          confidence=confidence, resamples=resamples, seed=seed,
                          higher_is_better=task.higher_is_better),
        metrics=metrics,
        ci=readings[grading]["ci"],
        grading=grading,
        readings={name: readings[name] for name in GRADINGS},
        format_rate=in_format,
        format_rate_ci=[in_format_low, in_format_high],
        latency=latency_summary(rows, rounds=rounds, resamples=resamples, seed=seed, confidence=confidence,
                                device=timing_device, engine=timing_engine),
        hit_limit=hit_limit,
        hit_limit_pct=100.0 * hit_limit / len(rows),
        generation=info,
        provenance=provenance.record(
            config_hash,
            generation=info.provenance,
            eval_file={"path": str(eval_file), "fingerprint": io.file_sha256(eval_file, 16)},
            generations_file={"path": str(generations_file), "fingerprint": io.file_sha256(generations_file, 16)}),
    )
    document.write(metrics_file)
    other = next(g for g in GRADINGS if g != grading)
    log.info("%s: %s = %s (%.0f%% CI %s–%s; %s %s) over %d samples, %s%% in the asked form; %d hit the "
             "length limit", info.cell, task.headline, _fmt(metrics[task.headline]), 100 * confidence, _fmt(low),
             _fmt(high), other, _fmt(readings[other]["metrics"][task.headline]), len(rows), _fmt(in_format),
             hit_limit)
    return document


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
