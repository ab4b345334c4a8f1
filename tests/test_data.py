"""The data stage: prepare_task reads, normalises, splits deterministically and writes with a record."""

import hashlib
import json

import pytest

from ftmatrix import config, io
from ftmatrix.data import prepare_task as prepare_task_entry
from ftmatrix.errors import DataError, SourceUnreachable
from ftmatrix.records import TaskMeta
from ftmatrix.tasks import get_task


def prepare_task(task: dict, *args, **kwargs):
    """prepare_task on the task entry as the validated config gives it (the schema's defaults filled in)."""
    study = {"models": [{"name": "m", "source": "build", "build": {}}], "tasks": [task]}
    return prepare_task_entry(config.validate(study)["tasks"][0], *args, **kwargs)


def arc_cfg(shared, train_size=40, eval_size=20, **extra):
    return {"name": "arc", "kind": "arc", "licence": "CC BY-SA 4.0", "train_size": train_size, "eval_size": eval_size,
            "source": {"type": "local", "format": "arc_release",
                       "train": str(shared / "arc/ARC-Challenge/ARC-Challenge-Train.jsonl"),
                       "eval": str(shared / "arc/ARC-Challenge/ARC-Challenge-Test.jsonl")}, **extra}


def openmath_cfg(shared, train_size=60, eval_size=25):
    return {"name": "openmath", "kind": "openmath", "licence": "CC BY 4.0", "train_size": train_size,
            "eval_size": eval_size,
            "source": {"type": "local", "format": "hub_jsonl",
                       "train": str(shared / "openmathinstruct2/openmathinstruct-2.sample.jsonl")}}


def squad_cfg(shared, train_size=60, eval_size=25):
    return {"name": "squad_v2", "kind": "squad_v2", "licence": "CC BY-SA 4.0", "train_size": train_size,
            "eval_size": eval_size,
            "source": {"type": "local", "format": "squad_json", "train": str(shared / "squad_v2/dev-v2.0.half.json")}}


def read(path):
    return io.read_jsonl(path)


def test_arc_from_release_files(shared_data, tmp_path):
    meta = prepare_task(arc_cfg(shared_data), tmp_path / "arc", data_seed=0, root=tmp_path)
    assert TaskMeta.read(tmp_path / "arc" / "meta.json") == meta     # what readers get is what was written
    train, evaluation = read(tmp_path / "arc/train.jsonl"), read(tmp_path / "arc/eval.jsonl")
    assert len(train) == 40 and len(evaluation) == 20
    assert not {r["id"] for r in train} & {r["id"] for r in evaluation}
    for row in train + evaluation:
        assert set(row) == {"id", "prompt", "completion", "reference"}
        assert row["completion"][0]["content"] == row["reference"]["label"]
    written = json.loads((tmp_path / "arc/meta.json").read_text())
    assert written == meta.to_json()
    assert written["task"] == "arc" and written["kind"] == "arc" and written["licence"] == "CC BY-SA 4.0"
    assert written["counts"]["train"] == {"available": 1119, "usable": 1119, "requested": 40, "written": 40}
    assert written["counts"]["eval"]["available"] == 1172 and written["counts"]["eval"]["written"] == 20
    assert written["split"]["method"] == "given"
    for name in ("train.jsonl", "eval.jsonl"):
        assert written["fingerprints"][name] == hashlib.sha256((tmp_path / "arc" / name).read_bytes()).hexdigest()
    assert set(written["source"]["files"]) == {arc_cfg(shared_data)["source"]["train"], arc_cfg(shared_data)["source"]["eval"]}
    assert written["provenance"]["config_hash"] and "libraries" in written["provenance"]


def test_same_inputs_same_bytes_and_the_seed_matters(shared_data, tmp_path):
    for folder in ("a", "b"):
        prepare_task(squad_cfg(shared_data), tmp_path / folder, data_seed=0, root=tmp_path)
    prepare_task(squad_cfg(shared_data), tmp_path / "c", data_seed=1, root=tmp_path)
    for name in ("train.jsonl", "eval.jsonl", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a/eval.jsonl").read_bytes() != (tmp_path / "c/eval.jsonl").read_bytes()


def test_selection_follows_the_documented_hash_order(shared_data, tmp_path):
    prepare_task(arc_cfg(shared_data, valid_size=30), tmp_path, data_seed=3, root=tmp_path)
    all_train = [json.loads(l)["id"] for l in (shared_data / "arc/ARC-Challenge/ARC-Challenge-Train.jsonl").read_text().splitlines()]
    # validation first, in its own hash order; then training from the rest
    valid = sorted(all_train, key=lambda i: hashlib.sha256(f"3:valid:{i}".encode()).hexdigest())[:30]
    assert {r["id"] for r in read(tmp_path / "valid.jsonl")} == set(valid)
    rest = [i for i in all_train if i not in set(valid)]
    expected = sorted(rest, key=lambda i: hashlib.sha256(f"3:{i}".encode()).hexdigest())[:40]
    written = [r["id"] for r in read(tmp_path / "train.jsonl")]
    assert set(written) == set(expected)
    assert written == [i for i in all_train if i in set(expected)]   # written in source order


def test_openmath_eval_is_carved_disjoint_by_problem_and_independent_of_train_size(shared_data, tmp_path):
    from ftmatrix.data import normalise_text

    prepare_task(openmath_cfg(shared_data, train_size=60), tmp_path / "small", data_seed=0, root=tmp_path)
    meta = prepare_task(openmath_cfg(shared_data, train_size=900), tmp_path / "big", data_seed=0,
                        root=tmp_path).to_json()
    assert (tmp_path / "small/eval.jsonl").read_bytes() == (tmp_path / "big/eval.jsonl").read_bytes()
    problems = lambda rows: {normalise_text(r["prompt"][0]["content"]) for r in rows}
    assert not problems(read(tmp_path / "big/train.jsonl")) & problems(read(tmp_path / "big/eval.jsonl"))
    assert meta["split"]["method"] == "carved" and "problem" in meta["split"]["disjoint_by"]
    assert meta["counts"]["train"]["written"] == 900 and meta["counts"]["eval"]["written"] == 25


def test_squad_carving_keeps_paragraphs_on_one_side(shared_data, tmp_path):
    meta = prepare_task(squad_cfg(shared_data, train_size=3000, eval_size=40), tmp_path, data_seed=0,
                        root=tmp_path).to_json()
    context = lambda row: row["prompt"][0]["content"].split("\n\nQuestion:")[0]
    train_contexts = {context(r) for r in read(tmp_path / "train.jsonl")}
    evaluation = read(tmp_path / "eval.jsonl")
    assert not train_contexts & {context(r) for r in evaluation}
    assert len({context(r) for r in evaluation}) > 20          # spread over many paragraphs
    assert any(r["reference"]["is_impossible"] for r in evaluation)
    assert meta["split"]["excluded_from_train"] > 0


def test_eval_rows_also_in_training_are_dropped_and_recorded(tmp_path):
    row = lambda i, q: {"id": i, "question": q, "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "A"}
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row(f"t{i}", f"Q{i}?")) + "\n" for i in range(5)))
    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text(json.dumps(row("e1", "  q3? ")) + "\n" + json.dumps(row("t0", "new?")) + "\n"
                          + json.dumps(row("e2", "other?")) + "\n")
    cfg = {"name": "arc", "kind": "arc", "train_size": 10, "eval_size": 10, "valid_size": 1,
           "source": {"type": "local", "format": "hub_jsonl", "train": "train.jsonl", "eval": "eval.jsonl"}}
    meta = prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path).to_json()   # relative paths from root
    assert [r["id"] for r in read(tmp_path / "out/eval.jsonl")] == ["e2"]
    dropped = meta["dropped"]["eval"]["also in the training split (same id or normalised text)"]
    assert dropped["count"] == 2 and set(dropped["examples"]) == {"e1", "t0"}
    assert meta["counts"]["train"]["written"] == 4   # fewer than asked: all there is, less one for validation
    assert meta["counts"]["valid"]["written"] == 1


def write_demo(folder, kind, train_rows, eval_rows):
    (folder / kind).mkdir(parents=True)
    for split, rows in (("train", train_rows), ("eval", eval_rows)):
        (folder / kind / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_demo_source_reads_the_demo_world_files(tmp_path):
    rows = [{"problem": f"What is {i} + {i}?", "generated_solution": f"{i} + {i} = \\boxed{{{2 * i}}}",
             "expected_answer": str(2 * i), "problem_source": "demo"} for i in range(30)]
    write_demo(tmp_path / "demo/seed4", "openmath", rows[:20], rows[20:])
    cfg = {"name": "sums", "kind": "openmath", "train_size": 8, "eval_size": 5, "valid_size": 4,
           "source": {"type": "demo", "seed": 4}}
    meta = prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path, demo_dir=tmp_path / "demo").to_json()
    assert len(read(tmp_path / "out/train.jsonl")) == 8 and len(read(tmp_path / "out/eval.jsonl")) == 5
    assert meta["source"]["type"] == "demo" and meta["source"]["revision"] == "demo-seed4"
    with pytest.raises(DataError, match="demo world has no .*seed5/openmath/train.jsonl"):
        prepare_task({**cfg, "source": {"type": "demo", "seed": 5}}, tmp_path / "o2", 0, tmp_path,
                     demo_dir=tmp_path / "demo")


def test_hub_source_through_datasets(tmp_path, monkeypatch):
    """The hub path with a real datasets.Dataset standing in for the unreachable hub download."""
    import datasets

    rows = [{"id": f"s{i}", "title": "T", "context": f"Paragraph {i // 3}.", "question": f"Q{i}?",
             "answers": {"text": [f"Paragraph {i // 3}"] if i % 2 else [], "answer_start": [0] if i % 2 else []}}
            for i in range(60)]
    calls = []

    def load_dataset(path, name=None, revision=None, split=None):
        calls.append((path, name, revision, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cfg = {"name": "squad_v2", "kind": "squad_v2", "train_size": 20, "eval_size": 10, "valid_size": 5,
           "source": {"type": "hub", "id": "rajpurkar/squad_v2", "subset": None, "revision": "abc123",
                      "train_split": "train", "eval_split": None}}
    meta = prepare_task(cfg, tmp_path, data_seed=0, root=tmp_path).to_json()
    assert calls == [("rajpurkar/squad_v2", None, "abc123", "train")]
    assert meta["source"]["id"] == "rajpurkar/squad_v2" and meta["revision"] == "abc123"
    train, evaluation = read(tmp_path / "train.jsonl"), read(tmp_path / "eval.jsonl")
    assert len(train) == 20 and len(evaluation) == 10
    # the same rows from a local hub_jsonl file give the same bytes
    local = tmp_path / "local.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_task({**cfg, "source": {"type": "local", "format": "hub_jsonl", "train": str(local)}},
                 tmp_path / "local", data_seed=0, root=tmp_path)
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_unreachable_hub_names_the_dataset_and_the_local_alternative(tmp_path):
    # the test session is offline (conftest), as a machine without network would be
    cfg = {"name": "arc", "kind": "arc", "train_size": 5, "eval_size": 5,
           "source": {"type": "hub", "id": "allenai/ai2_arc", "subset": "ARC-Challenge", "revision": "deadbeef",
                      "train_split": "train", "eval_split": "test"}}
    with pytest.raises(SourceUnreachable) as info:
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)
    message = str(info.value)
    assert "allenai/ai2_arc" in message and "deadbeef" in message and "type: local" in message
    assert not (tmp_path / "out").exists()


# --- bad inputs: a clear message naming the file, row or key, and nothing written ----------

GOOD_ARC = {"id": "a", "question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "A"}


def arc_local(tmp_path, content: bytes, name="train.jsonl"):
    (tmp_path / name).write_bytes(content)
    return {"name": "arc", "kind": "arc", "train_size": 5, "eval_size": 1,
            "source": {"type": "local", "format": "hub_jsonl", "train": name}}


def line(row):
    return (json.dumps(row) + "\n").encode()


@pytest.mark.parametrize("content, message", [
    (line(GOOD_ARC) + line({**GOOD_ARC, "id": "b"})[:-15], r"train.jsonl, line 2: not valid JSON .*looks truncated"),
    (line(GOOD_ARC) + b'{"id": "b", "question": "caf\xe9"}\n', r"train.jsonl, line 2: not UTF-8 text"),
    (line(GOOD_ARC) + line({k: v for k, v in GOOD_ARC.items() if k != "question"} | {"id": "b"}),
     r"train.jsonl, line 2: missing field 'question'"),
    (line(GOOD_ARC) + line({**GOOD_ARC, "id": 2}), r"train.jsonl, line 2: field 'id' should be a string, got int"),
    (line(GOOD_ARC) + line(GOOD_ARC), r"duplicate id 'a' in .*train.jsonl, line 1 and .*train.jsonl, line 2"),
    (b"", r"train.jsonl: the file has no rows"),
    (b"[1, 2]\n", r"train.jsonl, line 1: expected a JSON object per line, got list"),
])
def test_bad_data_files(tmp_path, content, message):
    cfg = arc_local(tmp_path, content)
    with pytest.raises(DataError, match=message):
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)
    assert not (tmp_path / "out").exists()


def test_missing_file_names_the_config_key(tmp_path):
    cfg = {"name": "arc", "kind": "arc", "train_size": 5, "eval_size": 1,
           "source": {"type": "local", "format": "arc_release", "train": "nowhere/train.jsonl"}}
    with pytest.raises(DataError, match=r"tasks\[arc\]\.source\.train: file 'nowhere/train.jsonl' not found"):
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)


def test_empty_after_filtering_is_an_error(tmp_path):
    rows = [{"problem": f"p{i}", "generated_solution": "no box here", "expected_answer": "1"} for i in range(4)]
    (tmp_path / "om.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"name": "om", "kind": "openmath", "train_size": 5, "eval_size": 2,
           "source": {"type": "local", "format": "hub_jsonl", "train": "om.jsonl"}}
    with pytest.raises(DataError, match=r"no usable train rows after filtering .*4 generated_solution has no"):
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)
    assert not (tmp_path / "out").exists()


def test_eval_set_taking_every_row_says_how_to_fix_it(tmp_path):
    rows = [{"problem": f"p{i}", "generated_solution": "\\boxed{1}", "expected_answer": "1"} for i in range(4)]
    (tmp_path / "om.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"name": "om", "kind": "openmath", "train_size": 5, "eval_size": 4,
           "source": {"type": "local", "format": "hub_jsonl", "train": "om.jsonl"}}
    with pytest.raises(DataError, match=r"no usable train rows.*lower eval_size or give eval files"):
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)


def test_identical_openmath_rows_are_dropped_not_errors(tmp_path):
    row = {"problem": "1+1?", "generated_solution": "\\boxed{2}", "expected_answer": "2"}
    rows = [row, row, {**row, "problem": "2+2?", "generated_solution": "\\boxed{4}", "expected_answer": "4"},
            {**row, "problem": "3+3?", "generated_solution": "\\boxed{6}", "expected_answer": "6"}]
    (tmp_path / "om.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"name": "om", "kind": "openmath", "train_size": 5, "eval_size": 1, "valid_size": 1,
           "source": {"type": "local", "format": "hub_jsonl", "train": "om.jsonl"}}
    meta = prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path).to_json()
    assert meta["dropped"]["train"]["identical to an earlier row"]["count"] == 1
    counts = meta["counts"]
    assert counts["train"]["written"] + counts["eval"]["written"] + counts["valid"]["written"] == 3


def test_wrong_format_for_the_kind_is_a_clear_error(tmp_path):
    cfg = arc_local(tmp_path, line(GOOD_ARC))
    cfg["source"]["format"] = "squad_json"
    from ftmatrix.errors import ConfigError

    # caught when the study is validated, before any job: the kind declares the formats it reads
    with pytest.raises(ConfigError, match="is 'squad_json', which task kind 'arc' does not read"):
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)
    with pytest.raises(DataError, match="task kind 'arc' cannot read local files of format 'squad_json'"):
        prepare_task_entry({**cfg, "valid_size": 1}, tmp_path / "out", data_seed=0, root=tmp_path)


def test_written_examples_are_what_the_task_module_makes(shared_data, tmp_path):
    """The example format other stages rely on: chat messages and the task's reference."""
    task = get_task("squad_v2")
    prepare_task(squad_cfg(shared_data, train_size=5, eval_size=5), tmp_path, data_seed=0, root=tmp_path)
    for row in read(tmp_path / "train.jsonl") + read(tmp_path / "eval.jsonl"):
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["completion"]] == ["assistant"]
        assert set(row["reference"]) == {"answers", "is_impossible"}
        assert task.extract(row["completion"][0]["content"], row["reference"]) in row["reference"]["answers"] + [""]


def test_damaged_parquet_is_a_clear_error(shared_data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(l) for l in (shared_data / "openmathinstruct2/openmathinstruct-2.sample.jsonl").read_text().splitlines()[:20]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "om.parquet")
    data = (tmp_path / "om.parquet").read_bytes()
    (tmp_path / "om.parquet").write_bytes(data[: len(data) // 2])
    cfg = {"name": "om", "kind": "openmath", "train_size": 5, "eval_size": 2,
           "source": {"type": "local", "format": "hub_parquet", "train": "om.parquet"}}
    with pytest.raises(DataError, match=r"om.parquet: not a readable Parquet file .*truncated"):
        prepare_task(cfg, tmp_path / "out", data_seed=0, root=tmp_path)


def test_resolved_commit_is_read_from_the_datasets_cache_path(tmp_path):
    import datasets

    from ftmatrix.data import _resolved_revision

    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = tmp_path / "allenai___ai2_arc" / "ARC-Challenge" / "0.0.0" / commit
    datasets.Dataset.from_list([{"x": 1}]).save_to_disk(str(folder))
    loaded = datasets.load_from_disk(str(folder))
    assert _resolved_revision({"revision": "main"}, loaded) == commit
    assert _resolved_revision({"revision": commit}, None) == commit
    assert _resolved_revision({"revision": "main"}, datasets.Dataset.from_list([{"x": 1}])) is None


def test_validation_is_carved_from_training_disjoint_and_independent_of_train_size(shared_data, tmp_path):
    """valid.jsonl: disjoint from train and eval by the task's rule (SQuAD: the paragraph), the same
    whatever train_size, recorded and fingerprinted in meta.json; the eval set does not move."""
    from ftmatrix.data import normalise_text

    small = prepare_task(squad_cfg(shared_data, train_size=60, eval_size=25) | {"valid_size": 20},
                         tmp_path / "small", data_seed=0, root=tmp_path)
    big = prepare_task(squad_cfg(shared_data, train_size=900, eval_size=25) | {"valid_size": 20},
                       tmp_path / "big", data_seed=0, root=tmp_path).to_json()
    for name in ("valid.jsonl", "eval.jsonl"):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "big" / name).read_bytes()
    context = lambda row: normalise_text(row["prompt"][0]["content"].split("\n\nQuestion:")[0])
    splits = {name: read(tmp_path / "big" / f"{name}.jsonl") for name in ("train", "valid", "eval")}
    assert len(splits["valid"]) == 20 and big["counts"]["valid"]["written"] == 20
    for a, b in (("train", "valid"), ("train", "eval"), ("valid", "eval")):
        assert not {context(r) for r in splits[a]} & {context(r) for r in splits[b]}, (a, b)
    assert big["fingerprints"]["valid.jsonl"] == hashlib.sha256((tmp_path / "big/valid.jsonl").read_bytes()).hexdigest()
    assert "validation carved" in big["split"]["description"]
    assert small.counts["train"]["written"] == 60
