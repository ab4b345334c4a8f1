"""Endpoint models in a study: the config's checks, the workflow's plan for their cells, and
their cost columns."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest

from ftmatrix import config as cfg
from ftmatrix.errors import ConfigError

ROOT = cfg.PROJECT_ROOT
HOSTED = {"name": "hosted", "source": "api", "finetune": False,
          "api": {"base_url": "https://api.example.invalid/v1", "model": "big-model", "key_env": "HOSTED_API_KEY",
                  "input_per_million_usd": 0.5, "output_per_million_usd": 1.5}}


def study(*models) -> dict:
    config = cfg.read_yaml(ROOT / "config.yaml")
    cfg.merge(config, cfg.read_yaml(ROOT / "studies" / "demo.yaml"))
    config["models"] = config["models"][:1] + [copy.deepcopy(m) for m in models]
    return config


def test_an_endpoint_entry_is_filled_with_its_defaults():
    config = cfg.validate(study(HOSTED))
    api = config["models"][1]["api"]
    assert (api["max_concurrency"], api["requests_per_minute"], api["timeout_s"], api["max_retries"]) == (4, 60, 60, 5)
    assert api["serve"] is None and api["extra_body"] == {}


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(finetune=True), "set finetune: false"),
    (lambda m: m["api"].pop("base_url"), "has no base_url"),
    (lambda m: m["api"].update(serve={"model": "nowhere"}), "api.serve.model is 'nowhere'"),
    (lambda m: m["api"].update(key_env="sk-abc 123"), "key_env"),
    (lambda m: m.pop("api"), "api"),
])
def test_a_wrong_endpoint_entry_stops_the_study_with_its_key(change, message):
    entry = copy.deepcopy(HOSTED)
    change(entry)
    with pytest.raises(ConfigError) as error:
        cfg.validate(study(entry))
    assert message in str(error.value)
    assert "models[1]" in str(error.value)


def test_endpoint_cells_run_locally_without_a_gpu_and_are_not_timed_in_rounds(tmp_path):
    """The demo's API row: rule evaluate_endpoint (no gpu resource, the served model's manifest as
    input), one of the rules the workflow runs locally, and no timing round names its cells."""
    def dry_run(*extra):
        run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile",
                              "studies/demo.yaml", *extra, "--printshellcmds", "--forceall"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout + run.stderr

    out = dry_run()
    jobs = out.split("\n\n")
    endpoint_jobs = [j for j in jobs if "rule evaluate_endpoint:" in j]
    assert len(endpoint_jobs) == 3
    for job in endpoint_jobs:
        assert "gpu=" not in job
        assert "data/demo/models/demo-large/manifest.json" in job
    # The default local rules (a study's own local_rules may change them; docs/cluster.md).
    default_local = re.search(r"LOCAL_RULES = config.get\((.*?)\n\)", (ROOT / "rules" / "common.smk").read_text(),
                              re.S).group(1)
    assert '"evaluate_endpoint"' in default_local
    rounds = [j for j in jobs if "rule time_round:" in j]
    assert rounds and all("demo-large-api" not in j for j in rounds)
    assert not [j for j in jobs if "rule evaluate_cell:" in j and "demo-large-api" in j]


def test_endpoint_cost_is_billed_tokens_times_prices():
    from ftmatrix.aggregate import endpoint_cost
    from tests.helpers import generation_record

    record = generation_record("hosted/base/r0/none/seed0/arc", 10, engine="openai", failed=2,
                               usage={"input_tokens": 8000, "output_tokens": 400, "samples": 8, "attempts": 11})
    cost = endpoint_cost(record, {"input_per_million_usd": 0.5, "output_per_million_usd": 1.5})
    per_sample = (1000 * 0.5 + 50 * 1.5) / 1e6          # 1,000 input and 50 output tokens a sample
    assert cost["cost_per_1k_usd"] == pytest.approx(1000 * per_sample)
    assert cost["cost_per_1k_batched_usd"] == cost["cost_per_1k_usd"]
    assert (cost["cost_device_kind"], cost["cost_hourly_usd"]) == ("api", None)
    assert endpoint_cost(record, None)["cost_per_1k_usd"] is None
