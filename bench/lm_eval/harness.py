"""The pipeline against lm-evaluation-harness on the same model, ARC rows and rendered prompts.

lm-eval runs offline here: the ``hf`` model type on a local folder, and a local task
(``arc_generative.yaml``, ``dataset_path: json``) whose data file holds the pipeline's eval
rows with the prompt already rendered by the model's chat template. Both sides decode
greedily up to the model's end-of-turn token with the same token budget, and both score
with the pipeline's ARC answer extraction (``arc_scoring.py``), so their accuracies can
differ only if their generated texts do.

Used by tests/test_lm_eval.py (equality) and bench/eval_throughput.py (samples/s).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASK_NAME = "ftmatrix_arc_generative"


# --------------------------------------------------------------------------- data and models

def arc_examples(shared_data: Path, split: str = "Test", n: int | None = None) -> list[dict]:
    """ARC-Challenge rows of the real release, in the pipeline's example format."""
    from ftmatrix.tasks import get_task

    task = get_task("arc")
    raw = task.read_local([str(shared_data / "arc" / "ARC-Challenge" / f"ARC-Challenge-{split}.jsonl")],
                          "arc_release")
    return task.to_examples(raw[:n] if n else raw, f"ARC-Challenge-{split}")


def write_manifest(path: Path, model_dir: Path, name: str) -> Path:
    from ftmatrix.models import link_model

    # The pipeline's own manifest of a local folder (file hashes, architecture checked).
    link_model({"name": name, "source": "local", "path": str(Path(model_dir).resolve()), "trust_remote_code": False},
               Path(path).parent, root=Path(model_dir).parent)
    return Path(path).parent / "manifest.json"


def train_tiny_arc_model(out_dir: Path, tokenizer_dir: Path, examples: list[dict], *, hidden_size: int = 64,
                         layers: int = 2, steps: int = 30, batch_size: int = 8, lr: float = 1e-2,
                         seed: int = 0) -> Path:
    """A tiny Qwen3 on the real Qwen3 tokenizer, trained briefly to answer ARC with a label and
    <|im_end|>, so that it stops on its own and scores above zero. The loss is taken on the
    answer tokens only, and logits are computed only there; the (tied) embedding of the 151k-token
    vocabulary stays frozen, which keeps a step cheap on a CPU."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from ftmatrix.evaluate import render_prompt

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
        max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=im_end,
        pad_token_id=tokenizer.pad_token_id)
    model = Qwen3ForCausalLM(config)
    model.model.embed_tokens.weight.requires_grad_(False)
    sequences = []
    for ex in examples:
        prompt = tokenizer(render_prompt(tokenizer, ex["prompt"], False), add_special_tokens=False)["input_ids"]
        answer = tokenizer(ex["completion"][0]["content"], add_special_tokens=False)["input_ids"] + [im_end]
        sequences.append((prompt, answer))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        picks = torch.randint(len(sequences), (batch_size,), generator=generator).tolist()
        batch = [sequences[i] for i in picks]
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        rows, cols, targets = [], [], []
        for r, (p, a) in enumerate(batch):
            seq = p + a
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
            for j, token in enumerate(a):        # position len(p)+j-1 predicts answer token j
                rows.append(r)
                cols.append(len(p) + j - 1)
                targets.append(token)
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)])
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.model.embed_tokens.weight.requires_grad_(True)
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


# --------------------------------------------------------------------------- the lm-eval task

def write_task(task_dir: Path, model_dir: Path, examples: list[dict], max_gen_toks: int,
               enable_thinking: bool = False) -> Path:
    """Write the data file (rendered prompts + gold) and the filled-in task YAML into task_dir."""
    from transformers import AutoTokenizer

    from ftmatrix.evaluate import render_prompt

    task_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data_file = task_dir / "arc.jsonl"
    with open(data_file, "w", encoding="utf-8") as fh:
        for ex in examples:
            ref = ex["reference"]
            fh.write(json.dumps({"id": ex["id"], "prompt": render_prompt(tokenizer, ex["prompt"], enable_thinking),
                                 "label": ref["label"], "labels": ref["labels"], "choices": ref["choices"]},
                                ensure_ascii=False) + "\n")
    stop = tokenizer.convert_ids_to_tokens(_end_of_turn(model_dir, tokenizer))
    template = (HERE / "arc_generative.yaml").read_text(encoding="utf-8")
    filled = (template.replace("@DATA_FILE@", str(data_file.resolve())).replace("@STOP@", stop)
              .replace("@MAX_GEN_TOKS@", str(int(max_gen_toks))))
    (task_dir / "arc_generative.yaml").write_text(filled, encoding="utf-8")
    shutil.copy(HERE / "arc_scoring.py", task_dir / "arc_scoring.py")
    return task_dir


def _end_of_turn(model_dir: Path, tokenizer) -> int:
    config = json.loads((Path(model_dir) / "generation_config.json").read_text())
    eos = config.get("eos_token_id", tokenizer.eos_token_id)
    return int(eos[0] if isinstance(eos, list) else eos)


class LmEvalRunner:
    """One lm-eval HF model, loaded once; ``run`` evaluates the local task and times generation."""

    def __init__(self, model_dir: Path, batch_size: int, device: str = "cpu"):
        from lm_eval.models.huggingface import HFLM

        self.lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=batch_size, device=device,
                       add_bos_token=False, trust_remote_code=False)
        self.generate_s = 0.0
        original = self.lm.generate_until

        def timed_generate_until(requests, disable_tqdm: bool = False):
            start = time.perf_counter()
            try:
                return original(requests, disable_tqdm=True)
            finally:
                self.generate_s += time.perf_counter() - start

        self.lm.generate_until = timed_generate_until

    def run(self, task_dir: Path) -> dict:
        """{'acc', 'no_label', 'generated': {id: text}, 'n', 'generate_s', 'samples_per_s'}."""
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        manager = TaskManager(include_path=str(task_dir), include_defaults=False)
        self.generate_s = 0.0
        results = simple_evaluate(model=self.lm, tasks=[TASK_NAME], task_manager=manager, num_fewshot=0,
                                  log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
                                  torch_random_seed=0, fewshot_random_seed=0)
        metrics = results["results"][TASK_NAME]
        samples = results["samples"][TASK_NAME]
        generated = {s["doc"]["id"]: s["resps"][0][0] for s in samples}
        n = len(samples)
        return {"acc": metrics["acc,none"], "no_label": metrics["no_label,none"], "generated": generated, "n": n,
                "generate_s": self.generate_s, "samples_per_s": n / self.generate_s if self.generate_s else None}


# --------------------------------------------------------------------------- the pipeline side

def run_pipeline(work_dir: Path, model_dir: Path, examples: list[dict], *, max_new_tokens: int, batch_size: int,
                 latency_samples: int | None = 0, warmup: int = 0, threads: int = 1, name: str = "tiny") -> dict:
    """evaluate_cell + score_cell on the same rows; {'acc', 'generated', 'n', 'generate_s', 'samples_per_s', ...}."""
    from ftmatrix import io
    from ftmatrix.evaluate import evaluate_cell
    from ftmatrix.scoring import score_cell

    work_dir.mkdir(parents=True, exist_ok=True)
    eval_file = work_dir / "eval.jsonl"
    io.write_jsonl(eval_file, examples)
    manifest = write_manifest(work_dir / "manifest.json", model_dir, name)
    cell = f"{name}/base/r0/none/seed0/arc"
    out = work_dir / "results" / cell
    settings = {"cell": cell, "model": {"name": name, "source": "local"}, "method": "base",
                "task": {"name": "arc", "kind": "arc", "max_new_tokens": max_new_tokens},
                "evaluate": {"batch_size": batch_size, "latency_samples": latency_samples, "warmup": warmup,
                             "merge_lora": True, "precision": "fp32"},
                "enable_thinking": False}
    # A fresh run each time: no partial file of an earlier run is resumed.
    for leftover in out.glob("generations*"):
        leftover.unlink()
    info = evaluate_cell(settings, manifest, None, eval_file, out / "generations.jsonl", out / "generation.json",
                         None, threads, progress=False)
    metrics = score_cell({"task": {"name": "arc", "kind": "arc"}, "bootstrap_resamples": 1000,
                          "bootstrap_seed": 0, "confidence": 0.95}, out / "generations.jsonl",
                         out / "generation.json", eval_file, out / "predictions.jsonl", out / "metrics.json", None)
    rows = io.read_jsonl(out / "generations.jsonl")
    metrics = metrics.to_json()        # score_cell and evaluate_cell return their records
    info = info.to_json() if hasattr(info, "to_json") else info
    return {"acc": metrics["metrics"]["accuracy"], "no_label": metrics["metrics"]["no_label_rate"],
            "macro_f1": metrics["metrics"]["macro_f1"], "generated": {r["id"]: r["generated"] for r in rows},
            "n": len(rows), "generate_s": info["wall_s"], "samples_per_s": info["samples_per_s"],
            "n_timed": info["n_timed"], "hit_limit": info["hit_limit"], "metrics": metrics}
