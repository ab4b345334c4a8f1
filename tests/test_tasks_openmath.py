"""OpenMathInstruct-2 task: the real sample parses; prompts, completions, ids and filters."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftmatrix.errors import DataError
from ftmatrix.tasks import get_task

MATH = get_task("openmath")


def sample(shared_data):
    return shared_data / "openmathinstruct2" / "openmathinstruct-2.sample.jsonl"


def test_every_sample_row_parses_and_is_usable(shared_data):
    path = sample(shared_data)
    rows = MATH.read_local([str(path)], "hub_jsonl")
    examples = MATH.to_examples(rows, str(path))
    assert len(examples) == 1000
    assert len({e["id"] for e in examples}) == 1000   # content ids: same problem, other solution -> other id
    assert all(MATH.drop_reason(r) is None for r in rows)
    for row, example in zip(rows, examples):
        assert example["completion"][0]["content"] == row["generated_solution"]
        assert example["reference"] == {"answer": row["expected_answer"]}
        assert example["prompt"][0]["content"].startswith(row["problem"].strip())
        assert example["prompt"][0]["content"].endswith("Put the final answer in \\boxed{}.")


def test_ids_are_stable_content_hashes():
    row = {"problem": "1+1?", "generated_solution": "\\boxed{2}", "expected_answer": "2", "problem_source": "x"}
    first = MATH.to_examples([row], "mem")[0]["id"]
    assert first == MATH.to_examples([dict(row)], "mem")[0]["id"]
    assert first != MATH.to_examples([{**row, "generated_solution": "so \\boxed{2}"}], "mem")[0]["id"]
    assert first.startswith("om-") and len(first) == 19


def test_parquet_reads_like_jsonl(shared_data, tmp_path):
    rows = [json.loads(line) for line in sample(shared_data).read_text(encoding="utf-8").splitlines()[:50]]
    path = tmp_path / "om.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    jsonl = tmp_path / "om.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert (MATH.to_examples(MATH.read_local([str(path)], "hub_parquet"), "p")
            == MATH.to_examples(MATH.read_local([str(jsonl)], "hub_jsonl"), "j"))


def test_unusable_rows_have_reasons():
    base = {"problem": "p", "generated_solution": "so \\boxed{3}", "expected_answer": "3"}
    assert MATH.drop_reason(base) is None
    assert "no \\boxed{}" in MATH.drop_reason({**base, "generated_solution": "it is 3"})
    assert MATH.drop_reason({**base, "expected_answer": " $ "}) == "empty expected_answer"


@pytest.mark.parametrize("row, message", [
    ({"problem": "p", "generated_solution": "\\boxed{1}"}, "missing field 'expected_answer'"),
    ({"problem": "p", "generated_solution": "\\boxed{1}", "expected_answer": 1}, "field 'expected_answer' should be a string, got int"),
    ({"problem": "", "generated_solution": "\\boxed{1}", "expected_answer": "1"}, "field 'problem' is empty"),
])
def test_bad_rows(tmp_path, row, message):
    path = tmp_path / "om.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}, line 1: {message}".replace("\\", "\\\\").replace("(", r"\(")):
        MATH.to_examples(MATH.read_local([str(path)], "hub_jsonl"), str(path))


def test_release_formats_are_refused():
    with pytest.raises(DataError, match="cannot read local files of format 'arc_release'"):
        MATH.read_local(["x"], "arc_release")
