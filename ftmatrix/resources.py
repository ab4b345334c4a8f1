"""What a job needs: parameters, memory and floating-point work from a model's shape.

Pure Python (no torch): the rules call it when Snakemake sizes each job (``rules/common.smk``:
``train_mem_mb``, ``train_runtime``, ``evaluate_mem_mb``, ``evaluate_runtime``), and the journal
and ``bench/reference_shapes.py`` call it to project a study's cost on a GPU.

The constants of the memory model were measured at the reference study's real shapes
(random-weight Qwen3-0.6B and -1.7B, ``bench/reference_shapes.py``, docs/performance.md
"The reference study at its real shapes"); ``tests/test_resources.py`` pins the model to those
measurements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MB = 2**20


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer with grouped-query attention and a gated MLP (Qwen3, Llama …)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool = True
    rope_theta: float = 1e6
    max_positions: int = 40960
    qk_norm: bool = True

    def hf_config(self) -> dict:
        """The keyword arguments of transformers' Qwen3Config for this shape."""
        return {"hidden_size": self.hidden, "num_hidden_layers": self.layers,
                "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads,
                "head_dim": self.head_dim, "intermediate_size": self.intermediate, "vocab_size": self.vocab,
                "tie_word_embeddings": self.tied, "rope_theta": self.rope_theta,
                "max_position_embeddings": self.max_positions, "rms_norm_eps": 1e-6, "hidden_act": "silu",
                "attention_bias": False}

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers of one block: q, k, v, o, gate, up, down."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    def block_params(self) -> int:
        norms = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        return sum(a * b for a, b in self.linears()) + norms

    def total_params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * self.block_params() + self.hidden

    def lora_params(self, rank: int) -> int:
        """LoRA on every linear layer but the output head (PEFT's all-linear): r × (in + out) each."""
        return self.layers * rank * sum(a + b for a, b in self.linears())

    def forward_flops_per_token(self, context: float) -> float:
        """Multiply-adds × 2 of one token's forward pass: the linear layers, the output head, and
        attention over ``context`` earlier positions (scores and weighted values)."""
        linear = self.layers * sum(a * b for a, b in self.linears()) + self.vocab * self.hidden
        attention = self.layers * 2 * self.heads * self.head_dim * context
        return 2.0 * (linear + attention)

    def kv_bytes_per_token(self, bytes_per_value: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value


# The published config.json of each model (huggingface.co/<id>/blob/main/config.json).
SHAPES = {
    "Qwen/Qwen3-0.6B": Shape(hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, intermediate=3072,
                             vocab=151936),
    "Qwen/Qwen3-1.7B": Shape(hidden=2048, layers=28, heads=16, kv_heads=8, head_dim=128, intermediate=6144,
                             vocab=151936),
}


def shape_of(model: dict) -> Shape | None:
    """The shape of a study's model entry: the published one of a known hub id, the configured one
    of a model the project builds; None when only ``params_b`` is known."""
    if model.get("id") in SHAPES:
        return SHAPES[model["id"]]
    build = model.get("build")
    if model.get("source") == "build" and build:
        tokenizer = build.get("tokenizer") or {}
        vocab = tokenizer.get("vocab_size") if tokenizer.get("source", "train") == "train" else None
        return Shape(hidden=build["hidden_size"], layers=build["num_hidden_layers"],
                     heads=build["num_attention_heads"], kv_heads=build["num_key_value_heads"],
                     head_dim=build["head_dim"], intermediate=build["intermediate_size"],
                     vocab=vocab or 151936, max_positions=build["max_position_embeddings"])
    return None


# ----------------------------------------------------------------------------- memory of a training job
#
# Host memory of a training job run in fp32 on a CPU (what `mem_mb` asks for; on a GPU node the
# host side needs less). Parts, measured at Qwen3-0.6B's shape (bench/reference_shapes.py; the
# numbers are in tests/test_resources.py):
#
# - RUNTIME_MB: Python, torch, transformers, TRL, the tokenizer and the data (the resident memory
#   before training less the fp32 weights: 620-660 MB in every job);
# - 4 bytes per parameter of the model (fp32), plus, for LoRA, 4 per adapter parameter;
# - 12 bytes per trainable parameter: its fp32 gradient and Adam's two moments;
# - per token of a micro-batch, the activations kept for the backward pass: ACT_BYTES bytes per
#   layer × hidden unit (8.4 MB a token at the 0.6B shape: the slope between 128 and 384 tokens),
#   a quarter of that with gradient checkpointing; plus TRL's LM-head workspace, tiles of
#   HEAD_TILE_BYTES per position × 32,768 vocabulary entries for up to 4,096 positions.
RUNTIME_MB = 650
ACT_BYTES = 293.0
HEAD_TILE = (4096, 32768)
HEAD_TILE_BYTES = 12
# The request adds this share above the modelled peak, for allocator slack.
MEM_MARGIN = 1.15


def _fallback_params(params_b: float) -> tuple[float, float]:
    """(parameters, layers × hidden) of a dense decoder of ``params_b`` billion parameters, when its
    shape is unknown: fitted on Qwen3 and Llama 3 shapes, erring high."""
    return params_b * 1e9, 28_672 * (params_b / 0.6) ** 0.6


def lora_params_estimate(shape: Shape | None, params_b: float, rank: int) -> int:
    """LoRA's trainable parameters on all linear layers; from ``params_b`` when the shape is unknown
    (1.0e6 × params_b^0.6 per rank: 17–33 % above Qwen3-0.6B…8B and Llama-3-8B)."""
    if shape is not None:
        return shape.lora_params(rank)
    return int(rank * 1.0e6 * params_b ** 0.6)


def train_memory(shape: Shape | None, params_b: float, method: str, rank: int, micro_batch_tokens: int, *,
                 gradient_checkpointing: bool = False) -> dict:
    """Peak host memory (MB) of a training job in fp32, by part (see the comment above)."""
    if shape is not None:
        params, layer_units = shape.total_params(), shape.layers * shape.hidden
    else:
        params, layer_units = _fallback_params(params_b)
    trainable = params if method == "full" else lora_params_estimate(shape, params_b, rank)
    weights = 4 * (params + (trainable if method == "lora" else 0))
    optimiser = 12 * trainable
    per_token = ACT_BYTES * layer_units
    if gradient_checkpointing:
        per_token /= 4
    tile_positions = min(micro_batch_tokens, HEAD_TILE[0])
    activations = micro_batch_tokens * per_token + tile_positions * HEAD_TILE[1] * HEAD_TILE_BYTES
    parts = {"runtime": RUNTIME_MB, "weights": weights / MB, "gradients_and_optimiser": optimiser / MB,
             "activations": activations / MB}
    parts["total"] = sum(parts.values())
    return parts


# On a GPU in bf16 (the default there): the same fp32 weights, gradients and Adam moments (mixed
# precision keeps fp32 masters), activations mostly in bf16, and the CUDA context in place of the
# Python runtime's share. An estimate from the host measurements: no GPU was measured.
CUDA_CONTEXT_MB = 1_000
GPU_ACT_FACTOR = 0.5


def train_gpu_memory_mb(shape: Shape | None, params_b: float, method: str, rank: int, micro_batch_tokens: int, *,
                        gradient_checkpointing: bool = False) -> float:
    host = train_memory(shape, params_b, method, rank, micro_batch_tokens,
                        gradient_checkpointing=gradient_checkpointing)
    return CUDA_CONTEXT_MB + host["weights"] + host["gradients_and_optimiser"] + GPU_ACT_FACTOR * host["activations"]


def train_mem_mb(model: dict, method: str, rank: int, train: dict) -> int:
    """What a training job asks for (MB): the model of its peak host memory at the study's
    micro-batch (batch × max_length tokens), with MEM_MARGIN."""
    memory = train_memory(shape_of(model), model["params_b"], method, rank,
                          train["per_device_batch_size"] * train["max_length"],
                          gradient_checkpointing=train["gradient_checkpointing"])
    return int(memory["total"] * MEM_MARGIN)


# ----------------------------------------------------------------------------- memory of an evaluation job
#
# Host memory of an evaluation job in fp32 on a CPU: the runtime (RUNTIME_MB), the fp32 weights,
# and the larger of two transients: loading (the hub's bf16 file is read beside its fp32 copy,
# 2 bytes per parameter: the training jobs' resident memory peaked 1,070 MB above its settled
# value while loading the 0.6B shape) and the KV cache of a batch of prompts of up to
# EVAL_PROMPT_TOKENS tokens growing by max_new_tokens, in fp32.
EVAL_PROMPT_TOKENS = 1024


def evaluate_memory(shape: Shape | None, params_b: float, batch_size: int, max_new_tokens: int) -> dict:
    """Peak host memory (MB) of an evaluation job in fp32, by part."""
    params = shape.total_params() if shape is not None else params_b * 1e9
    kv_per_token = (shape.kv_bytes_per_token(4) if shape is not None
                    else SHAPES["Qwen/Qwen3-0.6B"].kv_bytes_per_token(4) * (params_b / 0.6) ** 0.5)
    kv = kv_per_token * batch_size * (EVAL_PROMPT_TOKENS + max_new_tokens)
    parts = {"runtime": RUNTIME_MB, "weights": 4 * params / MB, "loading_or_kv_cache": max(2 * params, kv) / MB}
    parts["total"] = sum(parts.values())
    return parts


def evaluate_mem_mb(model: dict, task: dict, evaluate: dict) -> int:
    """What an evaluation job asks for (MB): the model of its peak at the study's batch size and
    the task's max_new_tokens, with MEM_MARGIN."""
    memory = evaluate_memory(shape_of(model), model["params_b"], evaluate["batch_size"], task["max_new_tokens"])
    return int(memory["total"] * MEM_MARGIN)


# ----------------------------------------------------------------------------- floating-point work and time


@dataclass(frozen=True)
class GPU:
    name: str
    bf16_tflops: float      # dense (no sparsity) bf16 peak, vendor's figure
    hbm_tb_s: float         # memory bandwidth
    memory_gb: float


GPUS = {
    "h100-sxm": GPU("NVIDIA H100 SXM", 989.0, 3.35, 80),
    "h200": GPU("NVIDIA H200", 989.0, 4.8, 141),
}
# Share of the peak a training step or a batched prefill sustains (MFU): 35 % is typical of
# transformers + TRL on one GPU for a model of this size, without fused kernels.
DEFAULT_MFU = 0.35
# A decoding step of transformers' eager generate() costs at least this much, whatever the model
# size: Python and kernel launches for 28 layers; the step of a small model never reaches the
# memory-bandwidth bound. bench/reference_shapes.py measures the host side of it on this CPU.
DECODE_STEP_FLOOR_S = 0.02


def train_flops(shape: Shape, method: str, rank: int, tokens: float, row_tokens: float) -> float:
    """Floating-point operations of training on ``tokens`` tokens in rows of ``row_tokens``:
    forward + backward (twice the forward) for full fine-tuning; for LoRA the backward computes
    no gradient of the frozen weights (one forward's worth) plus 6 per adapter parameter."""
    forward = shape.forward_flops_per_token(context=row_tokens / 2)
    if method == "full":
        return 3 * forward * tokens
    return (2 * forward + 6 * shape.lora_params(rank)) * tokens


def generation_seconds(shape: Shape, gpu: GPU, *, samples: int, batch_size: int, prompt_tokens: float,
                       output_tokens: float, mfu: float = DEFAULT_MFU) -> tuple[float, float]:
    """(FLOPs, seconds) of greedy generation for ``samples`` prompts in batches: the prefill at
    ``mfu`` of the peak, each decoding step at the slower of reading the bf16 weights and KV cache
    once and DECODE_STEP_FLOOR_S."""
    prefill = samples * prompt_tokens * shape.forward_flops_per_token(context=prompt_tokens / 2)
    decode = samples * output_tokens * shape.forward_flops_per_token(context=prompt_tokens + output_tokens / 2)
    batches = -(-samples // batch_size)
    steps = batches * output_tokens
    kv = shape.kv_bytes_per_token(2) * batch_size * (prompt_tokens + output_tokens / 2)
    step_s = max(DECODE_STEP_FLOOR_S, (2 * shape.total_params() + kv) / (gpu.hbm_tb_s * 1e12),
                 decode / steps / (gpu.bf16_tflops * 1e12 * mfu))
    return prefill + decode, prefill / (gpu.bf16_tflops * 1e12 * mfu) + steps * step_s


def project_study(config: dict, *, gpu: str = "h100-sxm", mfu: float = DEFAULT_MFU,
                  row_tokens: dict | None = None, prompt_tokens: dict | None = None,
                  output_tokens: dict | None = None) -> dict | None:
    """Every training and evaluation job of a study with its FLOPs and hours on one ``gpu``.

    Lengths, per task: training rows of ``row_tokens`` tokens (default: half of max_length, as the
    rules assume), prompts of ``prompt_tokens`` (default 256), answers of ``output_tokens``
    (default: max_new_tokens, the most a cell can cost). None when a model's shape is unknown.
    """
    from ftmatrix import grid

    card = GPUS[gpu]
    models = {m["name"]: m for m in config["models"]}
    shapes = {name: shape_of(m) for name, m in models.items()}
    if any(s is None for s in shapes.values()):
        return None
    tasks = {t["name"]: t for t in config["tasks"]}
    train, ev = config["train"], config["evaluate"]
    rows = {n: (row_tokens or {}).get(n, train["max_length"] / 2) for n in tasks}
    prompts = {n: (prompt_tokens or {}).get(n, 256) for n in tasks}
    outputs = {n: (output_tokens or {}).get(n, t["max_new_tokens"]) for n, t in tasks.items()}
    speed = card.bf16_tflops * 1e12 * mfu
    jobs = []
    for run in grid.runs(config):        # every rate of every variant's sweep is trained
        v = run.variant
        shape, task = shapes[v.model], tasks[v.train_task]
        examples = train_examples(train, task)
        flops = train_flops(shape, v.method, v.rank, examples * rows[v.train_task], rows[v.train_task])
        heldout = min(train["heldout_size"] or task["valid_size"], task["valid_size"])   # validation rows
        flops += 2 * heldout * rows[v.train_task] * shape.forward_flops_per_token(rows[v.train_task] / 2)
        jobs.append({"job": f"train {run.path}", "stage": "train", "flops": flops, "hours": flops / speed / 3600})
    for c in grid.cells(config):
        shape, task = shapes[c.variant.model], tasks[c.eval_task]
        n = task["eval_size"]
        timed = n if ev["latency_samples"] is None else min(ev["latency_samples"], n)
        common = {"prompt_tokens": prompts[c.eval_task], "output_tokens": outputs[c.eval_task], "mfu": mfu}
        f1, s1 = generation_seconds(shape, card, samples=n, batch_size=ev["batch_size"], **common)
        # the timed samples at batch size 1, once per timing round (rule time_round)
        f2, s2 = (x * ev["timing_rounds"] for x in generation_seconds(
            shape, card, samples=timed + ev["warmup"], batch_size=1, **common))
        jobs.append({"job": f"evaluate {c.path}", "stage": "evaluate", "flops": f1 + f2,
                     "hours": (s1 + s2) / 3600})
    hours = sum(j["hours"] for j in jobs)
    return {"gpu": card.name, "bf16_tflops": card.bf16_tflops, "mfu": mfu, "jobs": jobs,
            "flops": sum(j["flops"] for j in jobs), "hours": hours,
            "train_hours": sum(j["hours"] for j in jobs if j["stage"] == "train"),
            "evaluate_hours": sum(j["hours"] for j in jobs if j["stage"] == "evaluate"),
            "usd": hours * config["cost"]["gpu_hour_usd"],
            "assumptions": {"row_tokens": rows, "prompt_tokens": prompts, "output_tokens": outputs,
                            "decode_step_floor_s": DECODE_STEP_FLOOR_S}}


# ----------------------------------------------------------------------------- what the rules request

# The time limits assume a slower device than the projection (about 20 TFLOP/s sustained: bf16 on
# an older data-centre GPU, small-model efficiency), so a job is not killed on a modest GPU.
TRAIN_FLOPS_PER_S = 20e12


def train_examples(train: dict, task: dict) -> int:
    if train["max_steps"] > 0:
        return train["max_steps"] * train["per_device_batch_size"] * train["gradient_accumulation_steps"]
    from ftmatrix import grid

    return task["train_size"] * grid.task_epochs(task, train)


def train_runtime_min(model: dict, method: str, rank: int, train: dict, task: dict) -> int:
    """Minutes a training job asks for: its FLOPs (rows taken as half of max_length) at
    TRAIN_FLOPS_PER_S, plus 10 minutes for loading, tokenising and the held-out losses."""
    row = train["max_length"] / 2
    tokens = train_examples(train, task) * row
    shape = shape_of(model)
    if shape is not None:
        flops = train_flops(shape, method, rank, tokens, row)
    else:
        params = model["params_b"] * 1e9
        flops = (6 * params if method == "full"
                 else 4 * params + 6 * lora_params_estimate(None, model["params_b"], rank)) * tokens
    return int(10 + flops / TRAIN_FLOPS_PER_S / 60)
