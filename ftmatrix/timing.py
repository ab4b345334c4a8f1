"""Stage 3c: latency, timed apart from quality, in rounds.

The quality pass (``ftmatrix.evaluate``) generates every sample in batches and is never
timed: on a machine without a GPU, quality jobs run side by side. Latency comes from timing
jobs of its own, one per *round* (``evaluate.timing_rounds``, at least 3): round ``r`` loads
every variant of the study in turn and times each cell's timed samples (the first
``evaluate.latency_samples`` of its eval file) one at a time, at batch size 1, after
``evaluate.warmup`` untimed generations on that cell. It writes one ``TimingRecord`` per cell
and round: ``results/<study>/eval/<cell>/timing/round<r>.json``.

One engine times every local cell of a study (``evaluate.timing_engine``), so a latency column
never mixes engines: ``transformers`` (``generate()`` at batch size 1, the default) or ``vllm``
(one vLLM process per variant and round, each request alone in the engine; the record, the
metrics and the matrix's ``timing_engine`` column name it). An endpoint's cells are timed by
their own streamed requests.

Why rounds, and why this is enough to separate them:

* a round is a Snakemake job of its own that holds every core of the machine (rule
  ``time_round``: ``threads`` = ``--cores``), so no other job of the workflow — training,
  quality passes, scoring, another round — runs beside it, on a CPU or a GPU machine;
* each round is a new process that loads every model again, so a bad start (a cold cache,
  an unlucky memory placement) belongs to one round;
* between two rounds of a cell every other cell of the study is timed once, and the order
  turns by a third of the study each round (``round_order``), so a slow spell of the machine
  — another user's job, a thermal throttle — that lasts less than a round hits one round of
  a cell, and a spell at the end of one round and the start of the next hits different
  cells.

The scoring stage joins the rounds of each cell (``join_rounds``); intervals over rounds and
samples are in ``ftmatrix.bootstrap`` (``hierarchical_*``) and ``ftmatrix.analysis``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

from ftmatrix import io, provenance
from ftmatrix.errors import DataError, ModelError
from ftmatrix.grid import Cell, Variant, cell_from_path

log = logging.getLogger("ftmatrix.timing")


# --------------------------------------------------------------------------- the order


def round_order(variants: Sequence[Variant], tasks: Sequence[str], round_number: int,
                rounds: int) -> list[Cell]:
    """The cells in the order round ``round_number`` (1-based) times them.

    Variants follow the grid's order turned by ``(round − 1) / rounds`` of the list, and each
    variant's tasks turn by one per round; a variant's cells stay together (the model is
    loaded once per round)."""
    variants, tasks = list(variants), list(tasks)
    if not variants or not tasks:
        return []
    shift = round((round_number - 1) * len(variants) / rounds) % len(variants)
    turned = variants[shift:] + variants[:shift]
    k = (round_number - 1) % len(tasks)
    task_order = tasks[k:] + tasks[:k]
    return [Cell(v, t) for v in turned for t in task_order]


# --------------------------------------------------------------------------- one round


def timed_rows(rows: list[dict], latency_samples: int | None) -> list[dict]:
    """The first ``latency_samples`` rows of the eval file (all when null)."""
    k = len(rows) if latency_samples is None else max(0, min(int(latency_samples), len(rows)))
    return rows[:k]


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def timed_samples(samples: Sequence, results: Sequence) -> list[dict]:
    """TimedSample documents from each sample's timed ``Output`` (latency_s and ttft_s set)."""
    from ftmatrix.records import TimedSample

    out = []
    for sample, result in zip(samples, results):
        n_out = len(result.tokens)
        out.append(TimedSample(
            id=sample.id, output_tokens=n_out, hit_limit=result.hit_limit, latency_s=result.latency_s,
            ttft_s=result.ttft_s,
            tpot_s=(result.latency_s - result.ttft_s) / (n_out - 1) if n_out > 1 else None,
            generated=result.text).to_json())
    return out


def time_cell(gen, tokenizer, rows: list[dict], *, warmup: int, enable_thinking: bool) -> tuple[list[dict], float]:
    """Time each row at batch size 1 after ``warmup`` untimed generations, with transformers'
    ``generate()``; (samples, seconds)."""
    from ftmatrix.evaluate import prompt_samples

    samples = prompt_samples(tokenizer, rows, enable_thinking)
    for i in range(warmup if samples else 0):
        gen.timed(samples[i % len(samples)])
    started = time.perf_counter()
    results = [gen.timed(sample) for sample in samples]
    return timed_samples(samples, results), time.perf_counter() - started


def time_variant_vllm(model, tokenizer, variant: Variant, details: dict, cells: Sequence[Cell], *,
                      generators: dict, rows_by_task: dict, warmup: int, enable_thinking: bool, precision: str,
                      device: str, threads: int, work_dir: Path, log_file: Path) -> tuple[dict, float]:
    """Time the variant's ``cells`` with vLLM (``evaluate.timing_engine: vllm``): one vLLM process
    for the variant, each cell's samples one request at a time at batch size 1 after ``warmup``
    untimed ones (ftmatrix.engines.vllm_engine). Returns ({cell: (samples, seconds)}, vLLM's
    start-up in seconds). The generated ids are decoded as the quality pass decodes its own."""
    import tempfile

    from ftmatrix.engines import vllm_engine
    from ftmatrix.evaluate import prompt_samples, release_device, vllm_inputs

    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vllm-timing-", dir=work_dir) as tmp:
        inputs = vllm_inputs(model, tokenizer, variant.method, details, Path(tmp) / "merged")
        release_device(model, device)
        prompts = {cell: prompt_samples(tokenizer, rows_by_task[cell.eval_task], enable_thinking) for cell in cells}
        jobs = [{"prompt_ids": [s.input_ids for s in prompts[cell]], "max_tokens": generators[cell].max_new_tokens,
                 "stop_token_ids": generators[cell].stop_ids, "timed": True, "warmup": warmup} for cell in cells]
        result = vllm_engine.run(inputs["model_dir"], jobs, precision=precision, threads=threads, work_dir=tmp,
                                 log_file=log_file, adapter=inputs["adapter"], adapter_rank=inputs["adapter_rank"])
    out = {}
    for cell, job in zip(cells, result["jobs"]):
        outputs = []
        for ids, latency, ttft in zip(job["tokens"], job["latency_s"], job["ttft_s"]):
            output = generators[cell]._finish(ids)
            output.latency_s, output.ttft_s = latency, ttft
            outputs.append(output)
        out[cell] = (timed_samples(prompts[cell], outputs), job["generate_s"])
    return out, result["load_s"]


def time_round(settings: dict, *, manifests: dict[str, str], trained: dict[str, str], eval_files: dict[str, str],
               outputs: dict[str, str], config_hash: str | None, max_threads: int, device: str | None = None,
               progress: bool = True) -> list[str]:
    """Time every cell of ``settings['cells']`` once, in this round's order; write one
    TimingRecord per cell to ``outputs[cell path]``. Returns the cells in the order timed.

    ``settings``: ``round``, ``rounds``, ``evaluate`` (latency_samples, warmup, precision,
    merge_lora, timing_engine), ``enable_thinking``, ``tasks`` ({name: {kind, max_new_tokens}})
    and ``cells`` (cell paths in the grid's order). ``manifests``: model -> manifest.json; ``trained``:
    variant path -> trained folder; ``eval_files``: task -> eval.jsonl."""
    import torch
    from tqdm.auto import tqdm

    from ftmatrix.evaluate import Generator, load_variant, read_eval_rows, read_manifest, resolve_device, \
        resolve_precision
    from ftmatrix.records import TimingRecord
    from ftmatrix.workflow import job_threads

    ev = settings["evaluate"]
    engine = ev.get("timing_engine", "transformers")
    round_number, rounds = int(settings["round"]), int(settings["rounds"])
    cells = [cell_from_path(path) for path in settings["cells"]]
    variants = list(dict.fromkeys(c.variant for c in cells))
    tasks = list(dict.fromkeys(c.eval_task for c in cells))
    wanted = set(cells)
    order = [c for c in round_order(variants, tasks, round_number, rounds) if c in wanted]
    missing = [c.path for c in order if c.path not in outputs]
    if missing:
        raise DataError(f"time_round: no output file for cell {missing[0]}; the rule's outputs and its "
                        f"settings disagree — run it through Snakemake.")
    device = resolve_device(device)
    precision = resolve_precision(ev["precision"], device)
    torch.manual_seed(0)
    rows_by_task = {task: timed_rows(read_eval_rows(eval_files[task]), ev["latency_samples"]) for task in tasks}
    total = sum(len(rows_by_task[c.eval_task]) for c in order)
    bar = tqdm(total=total, unit="sample", desc=f"time round {round_number}/{rounds}", disable=not progress,
               dynamic_ncols=True)
    round_started = time.perf_counter()
    position = 0
    for variant in variants_in(order):
        manifest_file = manifests[variant.model]
        manifest = read_manifest(manifest_file)
        trained_dir = trained.get(variant.path) if variant.is_trained else None
        if variant.is_trained and not trained_dir:
            raise ModelError(f"time_round: the trained folder of {variant.path} is not among the inputs.")
        # A model of a few million parameters is timed on one thread, as its quality pass runs;
        # the job holds every core so that nothing else runs beside it.
        threads = max(1, min(int(max_threads), job_threads(manifest.params / 1e9)))
        torch.set_num_threads(threads)
        tick = time.perf_counter()
        model, tokenizer, details = load_variant(manifest, variant.method, trained_dir, merge_lora=ev["merge_lora"],
                                                 precision=precision, device=device, manifest_file=manifest_file)
        load_s = time.perf_counter() - tick
        cells_here = [c for c in order if c.variant == variant]
        generators = {cell: Generator(model, tokenizer, int(settings["tasks"][cell.eval_task]["max_new_tokens"]),
                                      device) for cell in cells_here}
        if engine == "vllm":
            # One vLLM process for the variant's cells; its start-up is this variant's load time.
            first = Path(outputs[cells_here[0].path]).parent
            log_file = first / f"vllm-round{round_number}.log"
            log_file.unlink(missing_ok=True)
            started_at, load_before = time.time(), _load_average()
            by_vllm, vllm_load_s = time_variant_vllm(
                model, tokenizer, variant, details, cells_here, generators=generators, rows_by_task=rows_by_task,
                warmup=int(ev["warmup"]), enable_thinking=bool(settings["enable_thinking"]), precision=precision,
                device=device, threads=threads, work_dir=first, log_file=log_file)
            load_s += vllm_load_s
        for cell in cells_here:
            position += 1
            task = settings["tasks"][cell.eval_task]
            if engine == "vllm":
                samples, seconds = by_vllm[cell]
            else:
                started_at, load_before = time.time(), _load_average()
                samples, seconds = time_cell(generators[cell], tokenizer, rows_by_task[cell.eval_task],
                                             warmup=int(ev["warmup"]),
                                             enable_thinking=bool(settings["enable_thinking"]))
            bar.update(len(samples))
            record = TimingRecord(
                cell=cell.path, round=round_number, rounds=rounds, position=position, cells_in_round=len(order),
                model={"name": manifest.name, "id": manifest.id, "resolved_revision": manifest.resolved_revision,
                       "params": manifest.params},
                method=variant.method, adapter=details.get("adapter"),
                merge_lora=details.get("merged") if variant.method == "lora" else None,
                enable_thinking=bool(settings["enable_thinking"]), precision=precision, device=device,
                threads=threads, max_new_tokens=int(task["max_new_tokens"]),
                latency_samples=ev["latency_samples"], warmup=int(ev["warmup"]), load_s=round(load_s, 4),
                timed_s=round(seconds, 4), started_at=round(started_at, 3), finished_at=round(time.time(), 3),
                load_average=[load_before, _load_average()], samples=samples,
                provenance=provenance.record(config_hash, device=provenance.device_info(),
                                             eval_file={"path": str(eval_files[cell.eval_task]),
                                                        "fingerprint": io.file_sha256(eval_files[cell.eval_task],
                                                                                      16)}),
                engine=engine)
            record.write(outputs[cell.path])
            load_s = 0.0     # the model was loaded once for the variant's cells
        del model
    bar.close()
    log.info("round %d of %d: %d cells, %d samples timed in %.1f s", round_number, rounds, len(order), total,
             time.perf_counter() - round_started)
    return [c.path for c in order]


def variants_in(order: Sequence[Cell]) -> list[Variant]:
    return list(dict.fromkeys(c.variant for c in order))


# --------------------------------------------------------------------------- joining rounds


def join_rounds(rows: Sequence[dict], timing_files: Sequence[str | Path]) -> tuple[list[dict], dict]:
    """Add each timed sample's rounds to its quality row: ``latency_rounds_s``, ``ttft_rounds_s``
    (one value per round, in round order), ``timed_output_tokens`` and ``timed_matches`` (every
    round's text and token count equal the quality pass's), and ``latency_s`` / ``ttft_s`` /
    ``tpot_s`` as means over the rounds. Returns (rows, {'rounds', 'mismatches', 'records', 'engine'}),
    the engine that timed every round (one per cell: rounds by different engines are refused)."""
    from ftmatrix.records import TimingRecord

    pairs = sorted(((TimingRecord.read(path), path) for path in timing_files), key=lambda pair: pair[0].round)
    records = [record for record, _ in pairs]
    by_id = {row["id"]: row for row in rows}
    ids = None
    for record, path in pairs:
        these = [s["id"] for s in record.samples]
        unknown = [i for i in these if i not in by_id]
        if unknown:
            raise DataError(f"{path}: timed sample {unknown[0]!r} is not among the cell's generations; the eval "
                            f"file changed since timing — rerun time_round (snakemake --forcerun time_round).")
        if ids is not None and these != ids:
            raise DataError(f"{path}: round {record.round} timed other samples than round {records[0].round}; "
                            f"rerun every round (snakemake --forcerun time_round).")
        if record.engine != records[0].engine:
            raise DataError(f"{path}: round {record.round} was timed by {record.engine}, round {records[0].round} by "
                            f"{records[0].engine}; a cell's rounds need one engine — rerun every round "
                            f"(snakemake --forcerun time_round).")
        ids = these
    out = [dict(row, latency_s=None, ttft_s=None, tpot_s=None, timed_matches=None) for row in rows]
    index = {row["id"]: row for row in out}
    mismatches = 0
    for position, sample_id in enumerate(ids or []):
        samples = [record.samples[position] for record in records]
        row = index[sample_id]
        latencies = [s["latency_s"] for s in samples]
        ttfts = [s["ttft_s"] for s in samples]
        tokens = samples[0]["output_tokens"]
        row["latency_rounds_s"] = latencies
        row["ttft_rounds_s"] = ttfts
        row["timed_output_tokens"] = tokens
        row["latency_s"] = sum(latencies) / len(latencies)
        row["ttft_s"] = sum(ttfts) / len(ttfts)
        row["tpot_s"] = (row["latency_s"] - row["ttft_s"]) / (tokens - 1) if tokens > 1 else None
        row["timed_matches"] = all(s["generated"] == row["generated"] and s["output_tokens"] == row["output_tokens"]
                                   for s in samples)
        if not row["timed_matches"]:
            mismatches += 1
            row["timed_generated"] = samples[0]["generated"]
    return out, {"rounds": len(records), "mismatches": mismatches, "records": records,
                 "engine": records[0].engine if records else None}


def round_medians(rows: Sequence[dict], rounds: int) -> list[float | None]:
    """The median latency of each round over the timed samples."""
    import numpy as np

    timed = [r["latency_rounds_s"] for r in rows if r.get("latency_rounds_s")]
    if not timed:
        return [None] * rounds
    values = np.array(timed, dtype=float)          # samples × rounds
    return [float(np.median(values[:, r])) for r in range(values.shape[1])]
