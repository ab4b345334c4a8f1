"""How long does `snakemake -n` take on ftmatrix, against bare Snakemake with as many jobs?

    python bench/dag_scale.py                      # reference study + a ~10,000-cell grid
    python bench/dag_scale.py --cells 2000 --repeats 3

For each study it writes, into a temporary folder, a trivial workflow with the same jobs
per stage and the same dependencies (download/build -> prepare -> train -> evaluate ->
score -> aggregate -> analysis -> figures -> journal -> PDF), made of plain wildcard patterns and `touch` (no input functions,
no config, no validation), then times `snakemake -n` on both, alternating the two so
that load from other processes hits both alike. It prints medians, the ratio of the
medians (wall clock, and CPU time of the Snakemake process, which load from other
processes inflates less), their ratios and the median of the per-pair ratios, and writes
them as JSON with --json.
Nothing is written to the project; every run works in a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

import ftmatrix.config  # noqa: E402
import ftmatrix.grid  # noqa: E402

KINDS = ("arc", "openmath", "squad_v2")


def grid_study(cells_wanted: int, n_tasks: int = 10, n_tuned: int = 4, n_ranks: int = 4) -> dict:
    """A study of about ``cells_wanted`` cells: ``n_tasks`` tasks, ``n_tuned`` tunable models
    and one base-only, ``n_ranks`` LoRA ranks, and as many seeds as it takes (hub sources:
    a dry run fetches nothing)."""
    per_seed = n_tuned * n_tasks * (1 + n_ranks) * n_tasks
    seeds = max(1, round((cells_wanted - (n_tuned + 1) * n_tasks) / per_seed))
    models = [
        {"name": f"model-{i}", "source": "hub", "id": f"org/model-{i}", "revision": "main",
         "params_b": 0.5 * (i + 1), "finetune": i < n_tuned}
        for i in range(n_tuned + 1)
    ]
    tasks = [
        {"name": f"task-{i}", "kind": KINDS[i % 3],
         "source": {"type": "hub", "id": f"org/data-{i}", "revision": "main"},
         "train_size": 1000, "eval_size": 200, "max_new_tokens": 32}
        for i in range(n_tasks)
    ]
    return {"study": "dag-scale", "seeds": list(range(seeds)), "models": models, "tasks": tasks,
            "lora": {"ranks": [8 * 2**i for i in range(n_ranks)]}}


def trivial_workflow(config: dict) -> str:
    """A bare Snakefile with ftmatrix's jobs and dependencies for this (validated) config."""
    variants = ftmatrix.grid.variants(config)
    trained = [v for v in variants if v.is_trained]
    cells = ftmatrix.grid.cells(config)
    tasks = [t["name"] for t in config["tasks"]]
    models = [m["name"] for m in config["models"]]
    base_cells = [f"{c.variant.model}/{c.eval_task}" for c in cells if not c.variant.is_trained]
    tuned_cells = [f"{c.variant.path}/{c.eval_task}" for c in cells if c.variant.is_trained]
    lines = [
        f"MODELS = {models!r}",
        f"TASKS = {tasks!r}",
        f"TRAINED = {[v.path for v in trained]!r}",
        f"RUNS = {dict((v.path, [r.path for r in ftmatrix.grid.runs_of(config, v)]) for v in trained)!r}",
        f"BASE_CELLS = {base_cells!r}",
        f"TUNED_CELLS = {tuned_cells!r}",
        f"TRAIN_TASKS = {sorted({v.train_task for v in trained})!r}",
        f"ROUNDS = {list(range(config['evaluate']['timing_rounds']))!r}",
        "",
        "rule all:",
        "    input: 'results/journal.html', 'results/journal.pdf'",
        "",
        "rule journal_pdf:",
        "    input: 'results/journal.html'",
        "    output: 'results/journal.pdf'",
        "    shell: 'touch {output}'",
        "",
        "rule journal:",
        "    input:",
        "        'results/matrix.txt', 'results/analysis.txt', 'results/figures.txt', 'results/sweeps.txt',",
        "        expand('score/base/{c}.txt', c=BASE_CELLS),",
        "        expand('score/tuned/{c}.txt', c=TUNED_CELLS),",
        "        expand('train/{v}/selected.txt', v=TRAINED),",
        "    output: 'results/journal.html'",
        "    shell: 'touch {output}'",
        "",
        "rule figures:",
        "    input: 'results/analysis.txt', 'results/sweeps.txt'",
        "    output: 'results/figures.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule analysis:",
        "    input: 'results/matrix.txt'",
        "    output: 'results/analysis.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule aggregate:",
        "    input:",
        "        expand('score/base/{c}.txt', c=BASE_CELLS),",
        "        expand('score/tuned/{c}.txt', c=TUNED_CELLS),",
        "        expand('train/{v}/selected.txt', v=TRAINED),",
        "        expand('data/{t}.txt', t=TASKS),",
        "        expand('models/{m}.txt', m=MODELS),",
        "        expand('timing/round{r}.txt', r=ROUNDS),",
        "    output: 'results/matrix.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule model:",
        "    output: 'models/{m}.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule prepare:",
        "    output: 'data/{t}.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule decontaminate:",
        "    input: expand('data/{e}.txt', e=TASKS)",
        "    output: 'decontaminated/{t}.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule sweeps:",
        "    input: expand('train/{v}/selected.txt', v=TRAINED)",
        "    output: 'results/sweeps.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule time_round:",
        "    input: expand('eval/base/{c}.txt', c=BASE_CELLS), expand('eval/tuned/{c}.txt', c=TUNED_CELLS)",
        "    output: 'timing/round{r}.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule train:",
        "    input: 'models/{m}.txt', 'decontaminated/{t}.txt'",
        "    output: 'train/{m}/{method}/r{rank}/{t}/seed{seed}/lr{lr}/done.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule select:",
        "    input: lambda w: [f'train/{r}/done.txt' for r in RUNS[w.v]]",
        "    output: 'train/{v}/selected.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule evaluate_base:",
        "    input: 'models/{m}.txt', 'data/{e}.txt'",
        "    output: 'eval/base/{m}/{e}.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule evaluate_tuned:",
        "    input: 'train/{v}/selected.txt', 'data/{e}.txt'",
        "    output: 'eval/tuned/{v}/{e}.txt'",
        "    shell: 'touch {output}'",
        "",
        "rule score:",
        "    input: 'eval/{kind}/{c}/{e}.txt', 'data/{e}.txt'",
        "    output: 'score/{kind}/{c}/{e}.txt'",
        "    shell: 'touch {output}'",
        "",
    ]
    # score/{kind}/{c}/{e}: the last segment is always a task name.
    lines += [
        "wildcard_constraints:",
        "    e='|'.join(TASKS),",
        "    kind='base|tuned',",
    ]
    return "\n".join(lines) + "\n"


def dry_run(snakefile: Path, workdir: Path, configfile: Path | None, targets=()) -> tuple[float, int, str, float]:
    """Wall seconds, jobs, output and CPU seconds (user + sys) of one ``snakemake -n``."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(snakefile), "-d", str(workdir)]
    cmd += list(targets)  # before --configfile, which takes every word after it
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return elapsed, count_jobs(proc.stdout + proc.stderr), proc.stdout + proc.stderr, cpu


def count_jobs(output: str) -> int:
    """The 'total' line of Snakemake's job statistics."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    raise SystemExit(f"no job statistics in the dry run's output:\n{output[-2000:]}")


def compare(name: str, config_path: Path | None, repeats: int, tmp: Path, targets=()) -> dict:
    config = ftmatrix.config.load(ROOT / "config.yaml", [config_path] if config_path else [])
    n_cells = len(ftmatrix.grid.cells(config))
    work = tmp / f"{name}-ftmatrix"
    bare = tmp / f"{name}-bare"
    work.mkdir()
    bare.mkdir()
    (bare / "Snakefile").write_text(trivial_workflow(config))
    ftm_times, bare_times, ftm_cpu, bare_cpu = [], [], [], []
    ftm_jobs = bare_jobs = 0
    for i in range(repeats):
        # Alternate which goes first, so a burst of load from elsewhere hits both.
        order = ("ftm", "bare") if i % 2 == 0 else ("bare", "ftm")
        for which in order:
            if which == "ftm":
                t, ftm_jobs, _, cpu = dry_run(ROOT / "Snakefile", work, config_path, targets)
                ftm_times.append(t)
                ftm_cpu.append(cpu)
            else:
                t, bare_jobs, _, cpu = dry_run(bare / "Snakefile", bare, None)
                bare_times.append(t)
                bare_cpu.append(cpu)
        print(f"  {name} run {i + 1}/{repeats}: ftmatrix {ftm_times[-1]:.2f} s ({ftm_cpu[-1]:.2f} s CPU), "
              f"bare {bare_times[-1]:.2f} s ({bare_cpu[-1]:.2f} s CPU)",
              file=sys.stderr, flush=True)
    ratios = [f / b for f, b in zip(ftm_times, bare_times)]
    return {
        "study": name,
        "cells": n_cells,
        "jobs_ftmatrix": ftm_jobs,
        "jobs_bare": bare_jobs,
        "ftmatrix_s": [round(t, 3) for t in ftm_times],
        "bare_s": [round(t, 3) for t in bare_times],
        "median_ftmatrix_s": round(statistics.median(ftm_times), 3),
        "median_bare_s": round(statistics.median(bare_times), 3),
        "ratio_of_medians": round(statistics.median(ftm_times) / statistics.median(bare_times), 3),
        "median_pair_ratio": round(statistics.median(ratios), 3),
        "ftmatrix_cpu_s": [round(t, 3) for t in ftm_cpu],
        "bare_cpu_s": [round(t, 3) for t in bare_cpu],
        "median_ftmatrix_cpu_s": round(statistics.median(ftm_cpu), 3),
        "median_bare_cpu_s": round(statistics.median(bare_cpu), 3),
        "cpu_ratio_of_medians": round(statistics.median(ftm_cpu) / statistics.median(bare_cpu), 3),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=10_000, help="cells of the large grid (about)")
    parser.add_argument("--repeats", type=int, default=5, help="dry runs of each workflow per study")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--target", action="append", default=[],
                        help="ftmatrix target(s) of the dry run (default: the workflow's default target)")
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(prefix="ftmatrix-dag-") as tmp:
        tmp = Path(tmp)
        if not args.skip_reference:
            results.append(compare("reference", None, args.repeats, tmp, args.target))
        if not args.skip_grid:
            study = tmp / "grid.yaml"
            study.write_text(yaml.safe_dump(grid_study(args.cells), sort_keys=False))
            results.append(compare("grid", study, args.repeats, tmp, args.target))

    print(f"{'study':<10} {'cells':>7} {'jobs':>7} {'ftmatrix s':>11} {'bare s':>8} {'ratio':>6} "
          f"{'ftmatrix CPU s':>15} {'bare CPU s':>11} {'ratio':>6}")
    for r in results:
        if r["jobs_ftmatrix"] != r["jobs_bare"]:
            print(f"warning: {r['study']}: {r['jobs_ftmatrix']} ftmatrix jobs vs {r['jobs_bare']} bare jobs",
                  file=sys.stderr)
        print(f"{r['study']:<10} {r['cells']:>7} {r['jobs_ftmatrix']:>7} {r['median_ftmatrix_s']:>11.2f} "
              f"{r['median_bare_s']:>8.2f} {r['ratio_of_medians']:>6.2f} {r['median_ftmatrix_cpu_s']:>15.2f} "
              f"{r['median_bare_cpu_s']:>11.2f} {r['cpu_ratio_of_medians']:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
