"""A small, realistic results tree written the way the evaluation and training stages write
theirs (metrics.json, predictions.jsonl, train_metrics.json, meta.json, manifest.json), with
seeded random per-sample outcomes. The matrix, analysis, figure and journal tests run on it.

Each cell's per-sample correctness comes from a latent difficulty per sample (shared by
every cell, as real evaluation samples are) and a skill per cell: fine-tuning raises the
skill on its training task, ARC-training helps SQuAD and maths-training hurts it, the larger
base is better than the smaller one. The statistic used with it is the mean per-sample score
(in percent), the corpus metric of accuracy-like headlines.
"""

from __future__ import annotations

import json
import math
import random
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ftmatrix import config as cfg
from ftmatrix import grid
from ftmatrix.records import CellMetrics, GenerationRow, Headline, ModelManifest, TaskMeta, TrainMetrics
from ftmatrix.scoring import latency_summary
from ftmatrix.tasks import get_task
from ftmatrix.selection import select_learning_rate, write_sweep_table
from tests.helpers import PROVENANCE, device_block, generation_record, train_metrics_record

HEADLINES = {"arc": "accuracy", "openmath": "exact_match", "squad_v2": "f1"}
BASE_SKILL = {"demo-small": {"arc": 0.30, "openmath": 0.10, "squad_v2": 0.45},
              "demo-large": {"arc": 0.60, "openmath": 0.35, "squad_v2": 0.65}}
TRANSFER = {("arc", "squad_v2"): 0.25, ("openmath", "squad_v2"): -0.35}
PLANTED_SCRIPT = "<script>document.title='PWNED';window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">"


def mean_score_statistic(kind: str, headline: str):
    def statistic(rows):
        return 100.0 * sum(float(r["scores"][headline]) for r in rows) / len(rows)
    return statistic


def study_config(*, ranks=(4, 16, 64), seeds=(0,), methods=("base", "full", "lora"),
                 tasks=("arc", "openmath", "squad_v2"), models=("demo-small", "demo-large"), api=None) -> dict:
    model_entries = []
    for name in models:
        model_entries.append({"name": name, "source": "build", "finetune": name == "demo-small",
                              "params_b": 0.001 if name == "demo-small" else 0.004,
                              "build": {"seed": 0}})
    raw = {"study": "synthetic", "seeds": list(seeds), "methods": list(methods), "models": model_entries,
           "tasks": [{"name": t, "kind": t, "source": {"type": "demo", "seed": 0}, "train_size": 100,
                      "eval_size": 60, "max_new_tokens": 16 if t != "openmath" else 48} for t in tasks],
           "lora": {"ranks": list(ranks)},
           # a three-rate sweep for full fine-tuning, two rates for LoRA
           "train": {"learning_rate": {"full": [1e-3, 3e-3, 1e-2], "lora": [1e-2, 3e-2]}}}
    if api:
        raw["cost"] = {"api": api}
    return cfg.validate(raw)


def skill(cell: grid.Cell) -> float:
    v = cell.variant
    p = BASE_SKILL[v.model][cell.eval_task]
    if v.method == "base":
        return p
    if v.train_task == cell.eval_task:
        gain = 0.5 if v.method == "full" else 0.3 + 0.01 * math.log2(v.rank)
    else:
        gain = TRANSFER.get((v.train_task, cell.eval_task), 0.0)
    return min(0.97, max(0.02, p + gain + 0.02 * v.seed))


@dataclass
class Tree:
    root: Path
    config: dict
    metrics: list[Path]
    predictions: list[Path]
    train_metrics: list[Path]
    task_meta: list[Path]
    manifests: list[Path]
    selections: list[Path] = dataclasses.field(default_factory=list)


def _realistic_sample(kind: str, i: int, correct: bool, tuned: bool, rng) -> tuple[dict, str]:
    """(reference, generated text) in the task's own formats, right or wrong as asked."""
    if kind == "arc":
        labels = ["A", "B", "C", "D"]
        gold = labels[i % 4]
        said = gold if correct else labels[(i + 1 + int(rng.integers(0, 3))) % 4]
        reference = {"label": gold, "labels": labels, "choices": [f"option {x}" for x in labels]}
        return reference, (said if tuned else f"Let me think. The answer is {said}.")
    if kind == "openmath":
        gold = str(12 + 7 * i)
        said = gold if correct else str(13 + 7 * i)
        return {"answer": gold}, (said if tuned else f"We compute step by step, so the answer is \\boxed{{{said}}}.")
    impossible = i % 3 == 0
    answers = [] if impossible else [f"the house number {i}"]
    if correct:
        said = "unanswerable" if impossible else answers[0]
    else:
        said = f"the garden {i}" if impossible else "unanswerable"
    return {"answers": answers, "is_impossible": impossible}, said


def write_results_tree(root: Path, config: dict, *, seed: int = 0, hostile: bool = False,
                       device: str = "cpu", realistic: bool = False) -> Tree:
    """The tree; ``realistic`` writes generations in the tasks' formats and scores them with the
    project's own scoring stage (ftmatrix.scoring.score_cell), as a real run does."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    tasks = {t["name"]: t for t in config["tasks"]}
    n_eval = {name: t["eval_size"] for name, t in tasks.items()}
    difficulty = {name: rng.random(n) for name, n in n_eval.items()}
    provenance = {**PROVENANCE, "config_hash": cfg.config_hash(config)}
    out = Tree(root, config, [], [], [], [], [])

    for name, task in tasks.items():
        meta = TaskMeta(task=name, kind=task["kind"], source={"type": "demo", "seed": 0, "revision": "demo-seed0",
                                                                "files": {}},
                        revision="demo-seed0", licence="CC0", data_seed=0,
                        counts={"train": {"available": 500, "usable": 480, "requested": task["train_size"],
                                          "written": task["train_size"]},
                                "eval": {"available": 100, "usable": 90, "requested": task["eval_size"],
                                         "written": task["eval_size"]}},
                        dropped={"train": {}, "eval": {}},
                        split={"method": "given", "description": "rows in hash order", "disjoint_by": "id",
                               "order": "sha256", "seed": 0, "excluded_from_train": 0},
                        fingerprints={"train.jsonl": f"tr{name[:4]}0123456789",
                                      "eval.jsonl": f"ev{name[:4]}0123456789"},
                        provenance=provenance)
        path = root / "data" / "tasks" / name / "meta.json"
        meta.write(path)
        out.task_meta.append(path)
    for model in config["models"]:
        params = 1_000_000 if model["name"] == "demo-small" else 4_000_000
        manifest = ModelManifest(
            name=model["name"], source="build", path=f"data/models/{model['name']}", path_from_manifest=".",
            id=f"ftmatrix-build/{model['name']}", revision="build", resolved_revision=f"sha-{model['name']}",
            params=params, trust_remote_code=False, use_safetensors=True, model_type="qwen3",
            architectures=["Qwen3ForCausalLM"], weights=["model.safetensors"], provenance=provenance)
        path = root / "data" / "models" / model["name"] / "manifest.json"
        manifest.write(path)
        out.manifests.append(path)

    # Each variant's sweep: its configured rates, the validation loss lowest at a rate the seed picks
    # (so some variants select an end of their sweep), selected by ftmatrix.selection.
    for variant in grid.trained_variants(config):
        runs = grid.runs_of(config, variant)
        best = int(rng.integers(len(runs)))
        files = []
        for i, run in enumerate(runs):
            train = train_metrics_record(variant, provenance=provenance, device=device, learning_rate=run.learning_rate,
                                         wall_time_s=10.0 + rng.random(), heldout_loss_after=1.0 + 0.1 * abs(i - best))
            path = root / "results" / "train" / run.path / "train_metrics.json"
            train.write(path)
            files.append(path)
        selection = root / "results" / "train" / variant.path / "selection.json"
        select_learning_rate(files, selection)
        out.selections.append(selection)
        out.train_metrics.append(files[best])

    for cell in grid.cells(config):
        task = tasks[cell.eval_task]
        headline = HEADLINES[task["kind"]]
        p = skill(cell)
        tuned = cell.variant.is_trained
        large = cell.variant.model == "demo-large"
        flip = rng.random(n_eval[cell.eval_task]) < 0.05
        rows = []
        for i, d in enumerate(difficulty[cell.eval_task]):
            correct = (d < p) != bool(flip[i])
            out_tokens = int(rng.integers(2, 6)) if tuned else int(rng.integers(task["max_new_tokens"] // 2, task["max_new_tokens"] + 1))
            hit = out_tokens >= task["max_new_tokens"]
            ttft = (0.004 if large else 0.002) * (1 + 0.1 * rng.random())
            tpot = (0.003 if large else 0.001) * (1 + 0.1 * rng.random())
            answer = f"answer {i}" if correct else f"wrong {i}"
            generated = f"The answer is {answer}." if not tuned else answer
            reference = {"answer": f"answer {i}"}
            if realistic:
                reference, generated = _realistic_sample(task["kind"], i, correct, tuned, rng)
            if hostile and i == 0:
                generated = f"{PLANTED_SCRIPT} {generated}"
            rows.append({"id": f"{cell.eval_task}-{i:04d}", "prompt": f"<|im_start|>user\nQuestion {i}?",
                         "generated": generated, "input_tokens": 30 + i % 7, "output_tokens": out_tokens,
                         "hit_limit": hit, "latency_s": ttft + tpot * (out_tokens - 1) if i < 20 else None,
                         "ttft_s": ttft if i < 20 else None, "tpot_s": tpot if i < 20 else None,
                         "reference": reference, "extracted": answer,
                         # The task's correctness metric (TaskKind.correctness) agrees with the headline.
                         "scores": dict.fromkeys({headline, get_task(task["kind"]).correctness or headline},
                                                 1.0 if correct else 0.0)})
        statistic = mean_score_statistic(task["kind"], headline)
        value = statistic(rows)
        boots = sorted(statistic([rows[j] for j in rng.integers(0, len(rows), len(rows))]) for _ in range(200))
        timed = [r for r in rows if r["latency_s"] is not None]
        generation = generation_record(cell.path, len(rows), n_timed=len(timed), device=device,
                                       max_new_tokens=task["max_new_tokens"],
                                       provenance={**provenance, "device": device_block(device)})
        hit = sum(r["hit_limit"] for r in rows)
        metrics = CellMetrics(
            cell=cell.as_dict(), task=cell.eval_task, task_kind=task["kind"], n=len(rows),
            headline=Headline(name=headline, value=value, ci_low=boots[4], ci_high=boots[195], confidence=0.95,
                              resamples=200, seed=0, higher_is_better=True),
            metrics={headline: value, "no_answer_pct": 0.0},
            ci={headline: [boots[4], boots[195]]},
            latency=latency_summary(rows),
            hit_limit=hit, hit_limit_pct=100.0 * hit / len(rows),
            generation=generation,
            provenance={**provenance, "generation": generation.provenance})
        folder = root / "results" / "eval" / cell.path
        folder.mkdir(parents=True, exist_ok=True)
        if realistic:
            _score_for_real(folder, root, cell, task, rows, generation)
            out.metrics.append(folder / "metrics.json")
            out.predictions.append(folder / "predictions.jsonl")
            continue
        metrics.write(folder / "metrics.json")
        with open(folder / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        out.metrics.append(folder / "metrics.json")
        out.predictions.append(folder / "predictions.jsonl")
    random.Random(seed).shuffle(out.metrics)   # the matrix must not depend on input order
    return out


def _score_for_real(folder: Path, root: Path, cell, task: dict, rows: list[dict], generation) -> None:
    from ftmatrix.scoring import score_cell

    eval_file = root / "data" / "tasks" / task["name"] / "eval.jsonl"
    if not eval_file.exists():
        eval_file.write_text("".join(json.dumps({"id": r["id"], "prompt": [{"role": "user", "content": r["prompt"]}],
                                                 "reference": r["reference"]}) + "\n" for r in rows))
    keep = ("id", "prompt", "generated", "input_tokens", "output_tokens", "hit_limit", "latency_s", "ttft_s", "tpot_s")
    (folder / "generations.jsonl").write_text(
        "".join(json.dumps(GenerationRow(**{k: r[k] for k in keep},
                                         timed_matches=True if r["latency_s"] is not None else None).to_json()) + "\n"
                for r in rows))
    generation.write(folder / "generation.json")
    score_cell({"task": {"name": task["name"], "kind": task["kind"]}, "bootstrap_resamples": 200,
                "bootstrap_seed": 0, "confidence": 0.95},
               generations_file=folder / "generations.jsonl", info_file=folder / "generation.json",
               eval_file=eval_file, predictions_file=folder / "predictions.jsonl",
               metrics_file=folder / "metrics.json", config_hash="synthetic")


@pytest.fixture
def tree(tmp_path) -> Tree:
    return write_results_tree(tmp_path, study_config())


def aggregate(tree: Tree, matrix: Path | None = None, cost: dict | None = None) -> Path:
    from ftmatrix.aggregate import aggregate_matrix

    matrix = matrix or tree.root / "results" / "matrix.csv"
    aggregate_matrix(tree.metrics, tree.train_metrics, tree.task_meta, tree.manifests,
                     cost if cost is not None else tree.config["cost"], matrix)
    return matrix


def test_tree_has_every_cell_of_the_grid(tree):
    assert len(tree.metrics) == len(grid.cells(tree.config)) == 2 * 3 + 3 * 4 * 3
    assert len(tree.train_metrics) == len(grid.trained_variants(tree.config)) == 12


def write_sweeps(tree: Tree, analysis_dir: Path) -> Path:
    """The learning-rate sweep table the workflow's tabulate_sweeps rule writes beside the analysis."""
    return write_sweep_table(tree.selections, Path(analysis_dir) / "lr_sweep.csv")
