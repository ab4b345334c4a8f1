"""The records that cross a stage: every key the writer produces is read back, checked by type,
and a file without one is refused with its name, the key and the command that writes it again.

The files come from tests.test_aggregate_tree's results tree, which builds every record with
its class (each writer's own round trip is checked in that stage's tests: test_data,
test_models, test_train, test_evaluate, test_scoring)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from ftmatrix.errors import DataError
from ftmatrix.io import file_sha256
from ftmatrix.numeric import finite
from ftmatrix.records import CellMetrics, GenerationRecord, GenerationRow, ModelManifest, TaskMeta, TrainMetrics
from tests.helpers import generation_record
from tests.test_aggregate_tree import study_config, write_results_tree

RECORDS = {"metrics": CellMetrics, "train_metrics": TrainMetrics, "task_meta": TaskMeta, "manifests": ModelManifest}
RULES = {"metrics": "score_cell", "train_metrics": "train_variant", "task_meta": "prepare_task",
         "manifests": "build_model"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_results_tree(tmp_path_factory.mktemp("tree"), study_config(ranks=(4,), tasks=("arc",)))


def required_keys(record_class) -> list[str]:
    return [f.name for f in dataclasses.fields(record_class) if not f.metadata.get("omit_none")]


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_every_file_reads_back_as_written(tree, kind):
    for path in getattr(tree, kind):
        record = RECORDS[kind].read(path)
        assert record.to_json() == json.loads(path.read_text())


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_a_missing_key_names_the_file_the_key_and_the_command(tree, kind, tmp_path):
    source = getattr(tree, kind)[0]
    data = json.loads(source.read_text())
    for key in required_keys(RECORDS[kind]):
        broken = dict(data)
        del broken[key]
        path = tmp_path / source.name
        path.write_text(json.dumps(broken))
        with pytest.raises(DataError) as info:
            RECORDS[kind].read(path)
        message = str(info.value)
        assert message.startswith(f"{path}: the {RECORDS[kind].WHAT} key {key!r} is missing"), message
        assert f"snakemake --cores all --force {path}" in message and RULES[kind] in message


def test_a_wrong_type_and_a_nested_key_are_named(tree, tmp_path):
    data = json.loads(tree.metrics[0].read_text())
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({**data, "n": "60"}))
    with pytest.raises(DataError, match=r"key 'n' must be an integer, got str \('60'\)"):
        CellMetrics.read(path)
    path.write_text(json.dumps({**data, "hit_limit": True}))
    with pytest.raises(DataError, match="key 'hit_limit' must be an integer, got bool"):
        CellMetrics.read(path)
    headline = {k: v for k, v in data["headline"].items() if k != "ci_low"}
    path.write_text(json.dumps({**data, "headline": headline}))
    with pytest.raises(DataError, match="key 'headline.ci_low' is missing"):
        CellMetrics.read(path)
    path.write_text(json.dumps({**data, "provenance": {k: v for k, v in data["provenance"].items()
                                                       if k != "generation"}}))
    with pytest.raises(DataError, match="key 'provenance.generation' is missing"):
        CellMetrics.read(path)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="the cell metrics must be a JSON object, got list"):
        CellMetrics.read(path)
    path.unlink()
    with pytest.raises(DataError, match=r"file not found\. The cell metrics: write it again with `snakemake"):
        CellMetrics.read(path)


def test_a_task_meta_needs_both_fingerprints(tree, tmp_path):
    data = json.loads(tree.task_meta[0].read_text())
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({**data, "fingerprints": {"train.jsonl": "abc"}}))
    with pytest.raises(DataError, match="key 'fingerprints.eval.jsonl' is missing"):
        TaskMeta.read(path)


def test_the_generation_record_sits_in_the_cell_metrics_once(tree):
    data = json.loads(tree.metrics[0].read_text())
    assert "provenance" not in data["generation"]
    record = CellMetrics.read(tree.metrics[0])
    assert isinstance(record.generation, GenerationRecord)
    assert record.generation.provenance == data["provenance"]["generation"]
    assert record.generation.hardware["device"] == "cpu"


def test_optional_keys_are_left_out_and_read_back_as_none(tmp_path):
    row = GenerationRow(id="a", prompt="p", generated="x", input_tokens=3, output_tokens=2, hit_limit=False,
                        latency_s=None, ttft_s=None, tpot_s=None, timed_matches=None)
    assert "timed_generated" not in row.to_json() and "latency_s" in row.to_json()
    assert GenerationRow.from_json(row.to_json(), "line 1") == row
    different = dataclasses.replace(row, timed_matches=False, timed_generated="y", timed_output_tokens=4)
    assert GenerationRow.from_json(different.to_json(), "line 1") == different
    with pytest.raises(DataError, match=r"generations.jsonl, line 3: the generation row key 'hit_limit' is missing"
                                        r".*--force results/x/generations.jsonl"):
        GenerationRow.from_json({k: v for k, v in row.to_json().items() if k != "hit_limit"},
                                "results/x/generations.jsonl, line 3", file="results/x/generations.jsonl")


def test_a_number_field_takes_integers_and_keeps_floats(tmp_path):
    record = generation_record("m/base/r0/none/seed0/arc", 4)
    data = {**record.to_json(), "wall_s": 2}
    assert GenerationRecord.from_json(data, "generation.json").wall_s == 2.0
    with pytest.raises(DataError, match="key 'wall_s' must be a number, got bool"):
        GenerationRecord.from_json({**data, "wall_s": True}, "generation.json")
    with pytest.raises(DataError, match="key 'decoding.stop_tokens' must be a list, got str"):
        GenerationRecord.from_json({**data, "decoding": {**data["decoding"], "stop_tokens": "<|im_end|>"}},
                                   "generation.json")


# ------------------------------------------------------------------------ the shared small helpers


def test_finite_is_true_for_finite_real_numbers_only():
    assert [finite(v) for v in (0, -3, 2.5, np.float32(1.5), np.int64(7), np.float64(1e300))] == [True] * 6
    assert not any(finite(v) for v in (None, math.nan, math.inf, -math.inf, np.nan, True, np.bool_(False),
                                       "1.5", [1], {}))


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 9000         # more than one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, 16) == hashlib.sha256(data).hexdigest()[:16]
