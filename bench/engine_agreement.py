"""Same answers from both engines: a finished study's quality pass generated again by vLLM.

For every cell of a finished study whose quality pass ran in transformers (``evaluate.engine:
transformers``), this generates the cell's samples again with the vllm engine, from the same
model folder, the same rendered token ids, the same stop tokens and budget and precision (as
the cell's ``generation.json`` records them), decodes vLLM's ids as the transformers engine
decodes its own, scores them with the project's scorer (``ftmatrix.scoring.score_cell``) and
compares:

* the generated text and output-token count of every sample: the share identical, and every
  difference listed (cell, sample id, both texts);
* every metric with an interval in the cell's ``metrics.json``: whether vLLM's value lies in
  the transformers cell's confidence interval.

One vLLM process per variant (its cells are one job each), with LoRA variants merged or
through vLLM's LoRA support as ``evaluate.merge_lora`` says. Nothing of the study is changed:
the vLLM side is written under ``--out``.

    snakemake --cores 2 --configfile studies/demo.yaml         # the finished study
    python bench/engine_agreement.py --study studies/demo.yaml --json bench-demo-engines.json

Needs .venv-vllm (make vllm); vLLM's CPU attention takes head sizes 32 to 512.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def finished_cells(results: Path) -> list[Path]:
    """The cell folders of a finished study whose quality pass transformers generated."""
    from ftmatrix.records import GenerationRecord

    cells = []
    for info in sorted(results.glob("eval/**/generation.json")):
        if (info.parent / "metrics.json").is_file() and GenerationRecord.read(info).engine == "transformers":
            cells.append(info.parent)
    return cells


def regenerate_variant(cell_dirs: list[Path], out: Path, threads: int) -> tuple[dict, float]:
    """Generate every cell of one variant again with vLLM; write each cell's generations.jsonl and
    generation.json (engine vllm) under ``out``. Returns ({cell dir: out dir}, vLLM start-up s)."""
    from ftmatrix import io
    from ftmatrix.engines import vllm_engine
    from ftmatrix.evaluate import Generator, _row, load_variant, prompt_samples, read_manifest, vllm_inputs
    from ftmatrix.records import GenerationRecord

    records = {d: GenerationRecord.read(d / "generation.json") for d in cell_dirs}
    first = records[cell_dirs[0]]
    manifest_file = first.provenance["model_manifest"]
    model, tokenizer, details = load_variant(read_manifest(manifest_file), first.method, first.trained_dir,
                                             merge_lora=bool(first.merge_lora) if first.method == "lora" else True,
                                             precision=first.precision, device="cpu", manifest_file=manifest_file)
    jobs, samples, generators = [], {}, {}
    for d, record in records.items():
        rows = io.read_jsonl(record.provenance["eval_file"]["path"])
        samples[d] = prompt_samples(tokenizer, rows, record.enable_thinking)
        generators[d] = Generator(model, tokenizer, record.max_new_tokens, "cpu")
        if generators[d].stop_ids != record.decoding.stop_token_ids:
            raise SystemExit(f"{d}: the model's stop tokens now differ from those the cell recorded")
        jobs.append({"prompt_ids": [s.input_ids for s in samples[d]], "max_tokens": record.max_new_tokens,
                     "stop_token_ids": record.decoding.stop_token_ids})
    with tempfile.TemporaryDirectory(prefix="engine-agreement-") as tmp:
        inputs = vllm_inputs(model, tokenizer, first.method, details, Path(tmp) / "merged")
        result = vllm_engine.run(inputs["model_dir"], jobs, precision=first.precision, threads=threads, work_dir=tmp,
                                 log_file=out / "vllm.log", adapter=inputs["adapter"],
                                 adapter_rank=inputs["adapter_rank"])
    written = {}
    for (d, record), job in zip(records.items(), result["jobs"]):
        target = out / record.cell
        target.mkdir(parents=True, exist_ok=True)
        io.write_jsonl(target / "generations.jsonl",
                       [_row(s, generators[d]._finish(ids), None) for s, ids in zip(samples[d], job["tokens"])])
        dataclasses.replace(record, engine="vllm", quality_pass_s=round(job["generate_s"], 4)).write(
            target / "generation.json")
        written[d] = target
    return written, result["load_s"]


def compare_cell(tf_dir: Path, vllm_dir: Path, task_entry: dict, evaluate: dict) -> dict:
    from ftmatrix import io
    from ftmatrix.records import CellMetrics, GenerationRecord
    from ftmatrix.scoring import score_cell

    record = GenerationRecord.read(tf_dir / "generation.json")
    settings = {"task": task_entry, **{k: evaluate[k] for k in ("bootstrap_resamples", "bootstrap_seed",
                                                                  "confidence", "grading")}}
    got = score_cell(settings, vllm_dir / "generations.jsonl", vllm_dir / "generation.json",
                     record.provenance["eval_file"]["path"], vllm_dir / "predictions.jsonl",
                     vllm_dir / "metrics.json", None)
    ref = CellMetrics.read(tf_dir / "metrics.json")
    ref_rows = {r["id"]: r for r in io.read_jsonl(tf_dir / "generations.jsonl")}
    got_rows = io.read_jsonl(vllm_dir / "generations.jsonl")
    differences = [{"cell": record.cell, "id": r["id"], "transformers": ref_rows[r["id"]]["generated"],
                    "vllm": r["generated"], "tokens": [ref_rows[r["id"]]["output_tokens"], r["output_tokens"]]}
                   for r in got_rows
                   if (r["generated"], r["output_tokens"]) != (ref_rows[r["id"]]["generated"],
                                                               ref_rows[r["id"]]["output_tokens"])]
    outside = []
    for name, (low, high) in ref.ci.items():
        value = got.metrics.get(name)
        if value is not None and low is not None and not (low - 1e-9 <= value <= high + 1e-9):
            outside.append({"metric": name, "vllm": value, "transformers": ref.metrics[name], "ci": [low, high]})
    return {"cell": record.cell, "n": len(got_rows), "same": len(got_rows) - len(differences),
            "headline": ref.headline.name, "transformers": ref.headline.value, "vllm": got.headline.value,
            "ci": [ref.headline.ci_low, ref.headline.ci_high], "metrics_outside_ci": outside,
            "differences": differences}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, required=True, help="the study file the finished run used")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--out", type=Path, help="where the vLLM side is written (a temporary folder by default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.chdir(ROOT)      # the records' paths are the project's relative ones

    from ftmatrix.config import load
    from ftmatrix.grid import cell_from_path

    config = load(args.config, [args.study])
    results = ROOT / "results" / config["study"]
    cells = finished_cells(results)
    if not cells:
        raise SystemExit(f"{results}: no finished cells generated by transformers; run the study first "
                         f"(snakemake --cores all --configfile {args.study}).")
    out = args.out or Path(tempfile.mkdtemp(prefix=f"engine-agreement-{config['study']}-"))
    out.mkdir(parents=True, exist_ok=True)
    tasks = {t["name"]: t for t in config["tasks"]}
    by_variant = defaultdict(list)
    for d in cells:
        by_variant[cell_from_path(str(d.relative_to(results / "eval"))).variant.path].append(d)
    report = {"study": config["study"], "cells": [], "startup_s": {}}
    started = time.perf_counter()
    for variant, dirs in by_variant.items():
        written, startup = regenerate_variant(dirs, out, args.threads)
        report["startup_s"][variant] = round(startup, 2)
        for d in dirs:
            task = tasks[cell_from_path(str(d.relative_to(results / "eval"))).eval_task]
            cell = compare_cell(d, written[d], task, config["evaluate"])
            report["cells"].append(cell)
            print(f"{cell['cell']:<45} {cell['same']:>4}/{cell['n']:<4} same; {cell['headline']} "
                  f"{cell['transformers']:.2f} (CI {cell['ci'][0]:.2f}–{cell['ci'][1]:.2f}) vs vLLM "
                  f"{cell['vllm']:.2f}" + (f"; outside CI: {cell['metrics_outside_ci']}"
                                           if cell["metrics_outside_ci"] else ""), flush=True)
    n = sum(c["n"] for c in report["cells"])
    same = sum(c["same"] for c in report["cells"])
    report.update(samples=n, same=same, same_pct=100.0 * same / n, wall_s=round(time.perf_counter() - started, 1),
                  cells_with_metric_outside_ci=sum(1 for c in report["cells"] if c["metrics_outside_ci"]))
    print(f"\n{config['study']}: {len(report['cells'])} cells, {same} of {n} samples identical "
          f"({report['same_pct']:.2f}%); {report['cells_with_metric_outside_ci']} cells with a metric outside "
          f"the transformers cell's CI; {report['wall_s']:.0f} s")
    for cell in report["cells"]:
        for diff in cell["differences"]:
            print(f"  {diff['cell']} {diff['id']}: transformers {diff['transformers']!r} ({diff['tokens'][0]} "
                  f"tokens) | vLLM {diff['vllm']!r} ({diff['tokens'][1]} tokens)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
