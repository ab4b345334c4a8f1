"""ARC task: every real row parses (3/5 choices, numeric labels); hub-schema files read the same."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftmatrix.errors import DataError
from ftmatrix.tasks import get_task

ARC = get_task("arc")


def release_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def to_hub(row):
    """ARC's release row in the hub's flat schema (allenai/ai2_arc)."""
    return {"id": row["id"], "question": row["question"]["stem"],
            "choices": {"text": [c["text"] for c in row["question"]["choices"]],
                        "label": [c["label"] for c in row["question"]["choices"]]},
            "answerKey": row["answerKey"]}


def test_every_release_row_parses(shared_data):
    counts = {}
    for path in sorted((shared_data / "arc").glob("*/*.jsonl")):
        raw = release_rows(path)
        examples = ARC.to_examples(ARC.read_local([str(path)], "arc_release"), str(path))
        assert len(examples) == len(raw)
        for row, example in zip(raw, examples):
            ref = example["reference"]
            assert example["id"] == row["id"]
            assert ref["labels"] == [c["label"] for c in row["question"]["choices"]]
            assert ref["label"] == row["answerKey"] == example["completion"][0]["content"]
            counts.setdefault("choices", set()).add(len(ref["labels"]))
            counts.setdefault("numeric", 0)
            counts["numeric"] += ref["labels"][0] == "1"
    assert {3, 4, 5} <= counts["choices"]
    assert counts["numeric"] > 0


def test_prompt_lists_choices_with_their_own_labels():
    rows = [{"id": "n1", "question": "Which is a liquid?", "answerKey": "2",
             "choices": {"text": ["ice", "water", "steam"], "label": ["1", "2", "3"]}}]
    example = ARC.to_examples(rows, "mem")[0]
    text = example["prompt"][0]["content"]
    assert example["prompt"][0]["role"] == "user" and len(example["prompt"]) == 1
    assert text.startswith("Which is a liquid?")
    assert "\n1. ice\n2. water\n3. steam\n" in text
    assert text.rstrip().endswith("Answer with the label of the correct choice (1, 2 or 3) and nothing else.")
    assert example["completion"] == [{"role": "assistant", "content": "2"}]
    assert example["reference"] == {"label": "2", "labels": ["1", "2", "3"], "choices": ["ice", "water", "steam"]}


@pytest.mark.parametrize("fmt", ["hub_jsonl", "hub_parquet"])
def test_hub_schema_files_read_like_the_release(shared_data, tmp_path, fmt):
    release = shared_data / "arc" / "ARC-Challenge" / "ARC-Challenge-Dev.jsonl"
    hub = [to_hub(row) for row in release_rows(release)]
    path = tmp_path / f"dev.{'jsonl' if fmt == 'hub_jsonl' else 'parquet'}"
    if fmt == "hub_jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in hub), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(hub), path)
    from_hub = ARC.to_examples(ARC.read_local([str(path)], fmt), str(path))
    from_release = ARC.to_examples(ARC.read_local([str(release)], "arc_release"), str(release))
    assert from_hub == from_release


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


GOOD = {"id": "q1", "question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}


@pytest.mark.parametrize("broken, message", [
    ({k: v for k, v in GOOD.items() if k != "answerKey"}, "line 2: missing field 'answerKey'"),
    ({**GOOD, "question": 7}, "line 2: field 'question' should be a string, got int"),
    ({**GOOD, "choices": {"text": ["x", "y", "z"], "label": ["A", "B"]}}, "line 2: field 'choices' has 3 texts but 2 labels"),
    ({**GOOD, "choices": {"text": ["x"], "label": ["A"]}}, "field 'text' needs at least 2 entries"),
    ({**GOOD, "answerKey": "C"}, "line 2: field 'answerKey' is 'C', which is not one of the choice labels"),
    ({**GOOD, "choices": {"text": ["x", 3], "label": ["A", "B"]}}, "field text[1] should be a string"),
    ({**GOOD, "id": ""}, "line 2: field 'id' is empty"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, broken, message):
    path = write_jsonl(tmp_path / "train.jsonl", [{**GOOD, "id": "q0"}, broken])
    with pytest.raises(DataError) as info:
        ARC.to_examples(ARC.read_local([path], "hub_jsonl"), path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_bad_release_row_names_the_nested_field(tmp_path):
    row = {"id": "r1", "question": {"stem": "Q?", "choices": [{"text": "x", "label": "A"}, {"label": "B"}]},
           "answerKey": "A"}
    path = write_jsonl(tmp_path / "release.jsonl", [row])
    with pytest.raises(DataError, match=r"line 1, field 'question.choices\[1\]': missing field 'text'"):
        ARC.read_local([path], "arc_release")


def test_squad_format_is_refused_for_arc(tmp_path):
    with pytest.raises(DataError, match="cannot read local files of format 'squad_json'"):
        ARC.read_local([str(tmp_path / "x.json")], "squad_json")
