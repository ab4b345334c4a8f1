"""The model of what a job needs (ftmatrix.resources): shapes and parameter counts checked against
transformers and PEFT, the memory model pinned to measurements at the reference study's real
shapes, and the projected cost of the reference study."""

from __future__ import annotations

import pytest

from ftmatrix import config as study_config
from ftmatrix import resources
from ftmatrix.resources import SHAPES

# Peak resident memory (ru_maxrss, MB) of whole training jobs, ftmatrix.train.train_variant on a
# random-weight model of Qwen3-0.6B's exact shape, real tokenizer, rows of real OpenMathInstruct-2
# text filling max_length, fp32 on CPU, 2 steps, micro-batch 1, the reference study's other
# settings (config.yaml). Measured with `python bench/reference_shapes.py --only train` (torch
# 2.13.0+cpu, transformers 5.24.0, TRL 1.16.0, PEFT 0.21.2; 2-core x86-64 machine, 24 GiB):
# (method, rank, micro-batch, max_length, peak MB)
MEASURED_TRAIN = [
    ("lora", 32, 1, 128, 4296),
    ("lora", 32, 1, 384, 6442),
    ("lora", 1024, 1, 128, 13859),
    ("full", 0, 1, 128, 11034),
    ("full", 0, 1, 256, 11234),
]
# The memory model may be off by this much, either way, on every measured job.
TOLERANCE = 0.10


def reference() -> dict:
    return study_config.validate(study_config.read_yaml(study_config.PROJECT_ROOT / "config.yaml"))


# ----------------------------------------------------------------------------- shapes and counts


@pytest.mark.parametrize("hub_id", sorted(SHAPES))
def test_each_shape_builds_the_published_model_and_counts_its_parameters(hub_id):
    torch = pytest.importorskip("torch")
    from transformers import Qwen3Config, Qwen3ForCausalLM

    shape = SHAPES[hub_id]
    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(**shape.hf_config()))
    assert model.num_parameters() == shape.total_params()
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert sorted((m.in_features, m.out_features) for m in linears) == sorted(shape.linears() * shape.layers)
    # The published totals (model cards: 0.6B, 1.7B; transformers counts these).
    assert shape.total_params() == {"Qwen/Qwen3-0.6B": 596_049_920, "Qwen/Qwen3-1.7B": 1_720_574_976}[hub_id]


def test_lora_trainable_parameters_per_rank_agree_with_peft_and_the_pipeline():
    """r × Σ(in + out) over every linear layer but the head, as PEFT counts it and as train_variant
    records it (trainable_params in train_metrics.json, the matrix and the journal)."""
    torch = pytest.importorskip("torch")
    from peft import get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from ftmatrix.train import lora_config, parameter_counts

    config = reference()
    lora = {k: v for k, v in config["lora"].items() if k != "ranks"}
    shape = SHAPES["Qwen/Qwen3-0.6B"]
    counts = {}
    for rank in config["lora"]["ranks"]:
        with torch.device("meta"):
            model = get_peft_model(Qwen3ForCausalLM(Qwen3Config(**shape.hf_config())), lora_config(rank, lora))
        trainable, total = model.get_nb_trainable_parameters()
        assert parameter_counts(model) == (trainable, total)
        assert trainable == shape.lora_params(rank) == resources.lora_params_estimate(shape, 0.6, rank)
        counts[rank] = trainable
    assert counts[32] == 20_185_088 and counts[1024] == 645_922_816
    assert counts[1024] > shape.total_params()   # r = 1024 trains more parameters than the model has


def test_the_fallback_lora_estimate_errs_high_on_known_shapes():
    for hub_id, params_b in (("Qwen/Qwen3-0.6B", 0.6), ("Qwen/Qwen3-1.7B", 1.7)):
        exact = SHAPES[hub_id].lora_params(64)
        assert exact <= resources.lora_params_estimate(None, params_b, 64) <= 1.4 * exact


def test_a_study_model_gets_its_shape():
    config = reference()
    assert resources.shape_of(config["models"][0]) is SHAPES["Qwen/Qwen3-0.6B"]
    built = study_config.validate(study_config.read_yaml(study_config.PROJECT_ROOT / "studies" / "demo.yaml"))
    shape = resources.shape_of(built["models"][0])
    assert shape is not None and shape.hidden == built["models"][0]["build"]["hidden_size"]
    assert resources.shape_of({"source": "hub", "id": "someone/unknown", "params_b": 3.0}) is None


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("method,rank,micro_batch,max_length,peak_mb", MEASURED_TRAIN)
def test_the_memory_model_matches_each_measured_training_job(method, rank, micro_batch, max_length, peak_mb):
    model = resources.train_memory(SHAPES["Qwen/Qwen3-0.6B"], 0.6, method, rank, micro_batch * max_length)
    assert model["total"] == pytest.approx(peak_mb, rel=TOLERANCE)


def test_the_requests_cover_the_model_at_the_reference_setting():
    config = reference()
    train = config["train"]
    model = config["models"][0]
    tokens = train["per_device_batch_size"] * train["max_length"]
    requests = {}
    for method, rank in [("full", 0)] + [("lora", r) for r in config["lora"]["ranks"]]:
        need = resources.train_memory(SHAPES[model["id"]], model["params_b"], method, rank, tokens)["total"]
        requests[(method, rank)] = resources.train_mem_mb(model, method, rank, train)
        assert requests[(method, rank)] >= need * resources.MEM_MARGIN - 1
    # LoRA's adapters grow with the rank; at r = 1024 the job needs more than full fine-tuning.
    ranks = config["lora"]["ranks"]
    assert [requests[("lora", r)] for r in ranks] == sorted(requests[("lora", r)] for r in ranks)
    assert requests[("lora", 1024)] > requests[("full", 0)] > requests[("lora", 32)]


def test_gradient_checkpointing_lowers_only_the_activations():
    shape = SHAPES["Qwen/Qwen3-0.6B"]
    plain = resources.train_memory(shape, 0.6, "full", 0, 8192)
    checkpointed = resources.train_memory(shape, 0.6, "full", 0, 8192, gradient_checkpointing=True)
    assert checkpointed["weights"] == plain["weights"]
    assert checkpointed["activations"] < plain["activations"]


# ----------------------------------------------------------------------------- time and cost


def test_training_flops_follow_six_n_per_token_for_full_fine_tuning():
    shape = SHAPES["Qwen/Qwen3-0.6B"]
    flops = resources.train_flops(shape, "full", 0, tokens=1e6, row_tokens=512)
    assert flops == pytest.approx(6 * shape.total_params() * 1e6, rel=0.15)
    lora = resources.train_flops(shape, "lora", 1024, tokens=1e6, row_tokens=512)
    assert resources.train_flops(shape, "lora", 32, 1e6, 512) < flops < lora


def test_the_reference_study_projection_counts_every_job():
    from ftmatrix import grid

    config = reference()
    projection = resources.project_study(config)
    # every learning rate of every variant's sweep is a training job of its own
    assert len(projection["jobs"]) == len(grid.runs(config)) + len(grid.cells(config))
    assert projection["hours"] == pytest.approx(projection["train_hours"] + projection["evaluate_hours"])
    assert projection["usd"] == pytest.approx(projection["hours"] * config["cost"]["gpu_hour_usd"])
    # One full fine-tuning job on OpenMath: 5,000 rows of 512 tokens at 35 % of an H100's bf16 peak.
    job = next(j for j in projection["jobs"] if j["job"].startswith("train qwen3-0.6b/full/r0/openmath/seed0/"))
    assert job["hours"] == pytest.approx(6 * 596e6 * 5000 * 512 / (989e12 * 0.35) / 3600, rel=0.2)
    # Timing every sample at batch size 1 to max_new_tokens dominates: GPU-hours, not minutes.
    assert projection["evaluate_hours"] > 10 * projection["train_hours"]
    assert resources.project_study({**config, "models": [{"name": "x", "source": "hub", "id": "a/b",
                                                          "params_b": 1.0, "finetune": True}]}) is None


def test_the_journal_setup_shows_the_projection_for_hub_models_of_known_shape():
    from ftmatrix.journal import cost_projection

    block = cost_projection(reference())
    text = " ".join(f"{k} {v}" for k, v in block["rows"])
    assert "H100" in block["gpu"] and "GPU-hours" in text and "r1024: 646M" in text
    demo = study_config.validate(study_config.read_yaml(study_config.PROJECT_ROOT / "studies" / "demo.yaml"))
    assert cost_projection(demo) is None


# Peak resident memory (MB) of the same training jobs before their first step: the model loaded
# from its bf16 file into fp32 (full fine-tuning and LoRA r = 32 alike), the part an evaluation
# job of a short answer shares.
MEASURED_LOAD_PEAK_MB = 3994


# Peak resident memory (MB) of whole evaluation jobs, ftmatrix.evaluate.evaluate_cell on the
# untuned random-weight model of each shape (4 real OpenMathInstruct-2 prompts, batch size 4,
# 32 new tokens, every answer running to the limit, 2 samples timed after 1 warm-up, fp32 on
# CPU), measured with `python bench/reference_shapes.py --only evaluate` as above:
# (hub id, params_b, batch size, max_new_tokens, peak MB)
# The 1.7B job's peak is its resident high-water mark (VmHWM) read during generation, after
# loading: generating 32 tokens for 4 prompts on this CPU outlasts the measurement session, and
# the KV cache of 4 × 100 tokens (under 0.1 GB) cannot lift the peak set while loading.
MEASURED_EVAL = [
    ("Qwen/Qwen3-0.6B", 0.6, 4, 32, 3885),
    ("Qwen/Qwen3-1.7B", 1.7, 4, 32, 10320),
]


@pytest.mark.parametrize("hub_id,params_b,batch_size,max_new_tokens,peak_mb", MEASURED_EVAL)
def test_the_evaluation_memory_model_matches_each_measured_evaluation_job(hub_id, params_b, batch_size,
                                                                          max_new_tokens, peak_mb):
    model = resources.evaluate_memory(SHAPES[hub_id], params_b, batch_size, max_new_tokens)
    assert model["total"] == pytest.approx(peak_mb, rel=TOLERANCE)


def test_the_evaluation_memory_model_matches_the_measured_loading_peak():
    shape = SHAPES["Qwen/Qwen3-0.6B"]
    short = resources.evaluate_memory(shape, 0.6, batch_size=1, max_new_tokens=16)
    assert short["total"] == pytest.approx(MEASURED_LOAD_PEAK_MB, rel=TOLERANCE)
    # A batch of 16 long answers needs its KV cache beyond the loading transient.
    long = resources.evaluate_memory(shape, 0.6, batch_size=16, max_new_tokens=512)
    assert long["loading_or_kv_cache"] > short["loading_or_kv_cache"]
