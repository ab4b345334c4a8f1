"""The pipeline's generative ARC accuracy equals lm-evaluation-harness's on the same tiny model,
rows and rendered prompts (issue: against the field's reference harness)."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def harness(root):
    spec = importlib.util.spec_from_file_location("ftmatrix_lm_eval_harness", root / "bench" / "lm_eval" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_trained_tiny_model_same_accuracy_and_text_as_lm_eval(tmp_path, harness, shared_data, qwen_tokenizer_dir):
    import torch

    torch.set_num_threads(2)
    model = harness.train_tiny_arc_model(tmp_path / "model", qwen_tokenizer_dir,
                                         harness.arc_examples(shared_data, "Train", 400), steps=30)
    examples = harness.arc_examples(shared_data, "Test", 24)
    pipeline = harness.run_pipeline(tmp_path / "pipeline", model, examples, max_new_tokens=8, batch_size=8,
                                    latency_samples=4, warmup=1, threads=2)
    lm = harness.LmEvalRunner(model, batch_size=8).run(harness.write_task(tmp_path / "task", model, examples, 8))

    assert lm["n"] == pipeline["n"] == 24
    assert pipeline["generated"] == lm["generated"]
    assert pipeline["acc"] == pytest.approx(lm["acc"], abs=1e-9)
    assert pipeline["no_label"] == pytest.approx(lm["no_label"], abs=1e-9)
    # the briefly trained model answers with a label and stops on its own: a non-trivial comparison
    assert pipeline["acc"] > 0 and pipeline["hit_limit"] == 0
    assert pipeline["n_timed"] == 4


def test_untrained_model_long_outputs_same_text_as_lm_eval(tmp_path, harness, shared_data, qwen_tokenizer_dir):
    """A random model never says <|im_end|>: every output runs to the limit, in both harnesses alike."""
    import torch

    torch.set_num_threads(2)
    model = harness.train_tiny_arc_model(tmp_path / "model", qwen_tokenizer_dir,
                                         harness.arc_examples(shared_data, "Train", 4), steps=0)
    examples = harness.arc_examples(shared_data, "Test", 12)
    pipeline = harness.run_pipeline(tmp_path / "pipeline", model, examples, max_new_tokens=12, batch_size=4)
    lm = harness.LmEvalRunner(model, batch_size=4).run(harness.write_task(tmp_path / "task", model, examples, 12))
    assert pipeline["hit_limit"] == 12
    assert pipeline["generated"] == lm["generated"]
    assert pipeline["acc"] == pytest.approx(lm["acc"], abs=1e-9)
