"""The demo study's two models, built exactly as studies/demo.yaml says: both have some skill
on the demo tasks, and the larger one is measurably better (the miniature of 0.6B vs 1.7B)."""

import math

import pytest

from ftmatrix import config as study_config
from ftmatrix import demo_world, io, models
from ftmatrix.tasks import get_task

pytestmark = pytest.mark.slow

KINDS = ("arc", "openmath", "squad_v2")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, root):
    cfg = study_config.load(root / "config.yaml", [root / "studies" / "demo.yaml"])
    seed = cfg["models"][0]["build"]["seed"]
    base = tmp_path_factory.mktemp("demo")
    world = base / f"seed{seed}"
    demo_world.write_world(world, seed)
    built = {}
    for model in cfg["models"]:
        built[model["name"]] = models.build_model(model, base / model["name"], corpus=world / "world.json",
                                                  threads=1)
    eval_rows = {kind: io.read_jsonl(world / kind / "eval.jsonl")[:60] for kind in KINDS}
    return base, built, eval_rows


def completion_loss(folder, examples) -> float:
    """Mean loss per token of the gold completions, given the prompts (teacher forcing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            prompt = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True,
                                                   enable_thinking=False, tokenize=False)
            full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], enable_thinking=False,
                                                 tokenize=False)
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
            labels = ids.clone()
            labels[0, : len(prompt_ids)] = -100
            n = int((labels[0, 1:] != -100).sum())
            total += model(input_ids=ids, labels=labels).loss.item() * n
            count += n
    return total / count


def greedy_scores(folder, kind, rows, max_new_tokens) -> list[float]:
    """Per-sample headline-style scores of greedy answers, with the task's own extraction and scoring."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task = get_task(kind)
    examples = task.to_examples(rows, "demo eval")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    prompts = [tokenizer.apply_chat_template(e["prompt"], add_generation_prompt=True, enable_thinking=False,
                                             tokenize=False) for e in examples]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    scores = []
    for text, example in zip(texts, examples):
        per_sample = task.score(task.extract(text, example["reference"]), example["reference"])
        headline = next(k for k in ("correct", "exact_match", "f1") if k in per_sample)
        scores.append(per_sample[headline] / 100.0)
    return scores


def test_both_demo_models_are_pretrained_and_the_larger_has_more_parameters(demo):
    _, built, _ = demo
    small, large = built["demo-small"], built["demo-large"]
    assert large["params"] > 2 * small["params"]
    for manifest in (small, large):
        curve = manifest["pretraining"]["loss_curve"]
        assert curve[-1][1] < 0.5 * curve[0][1]
    print({name: (m["params"], m["wall_s"], m["pretraining"]["heldout_loss"]) for name, m in built.items()})
    assert large["pretraining"]["heldout_loss"] < small["pretraining"]["heldout_loss"]


def test_the_larger_demo_model_predicts_the_eval_answers_better(demo):
    base, _, eval_rows = demo
    losses = {}
    for name in ("demo-small", "demo-large"):
        losses[name] = {kind: completion_loss(base / name, get_task(kind).to_examples(eval_rows[kind], "eval"))
                        for kind in KINDS}
    print("completion loss per token:", losses)
    for kind in KINDS:
        assert losses["demo-large"][kind] < losses["demo-small"][kind], (kind, losses)
    # Both far better than a uniform guess over the vocabulary.
    vocab = demo[1]["demo-small"]["tokenizer"]["vocab_size"]
    assert all(v < 0.5 * math.log(vocab) for m in losses.values() for v in m.values()), losses


def test_both_demo_models_have_some_skill_and_the_larger_more(demo):
    base, _, eval_rows = demo
    totals = {}
    for name in ("demo-small", "demo-large"):
        per_task = {}
        for kind, max_new in (("arc", 8), ("openmath", 48), ("squad_v2", 16)):
            per_task[kind] = sum(greedy_scores(base / name, kind, eval_rows[kind], max_new)) / len(eval_rows[kind])
        totals[name] = per_task
    print("greedy scores:", totals)
    # Above chance on multiple choice (4 options), and some exact answers on the other two.
    for name, per_task in totals.items():
        assert per_task["arc"] > 0.3 and per_task["openmath"] > 0.05 and per_task["squad_v2"] > 0.2, totals
    assert sum(totals["demo-large"].values()) > sum(totals["demo-small"].values()) + 0.1, totals
