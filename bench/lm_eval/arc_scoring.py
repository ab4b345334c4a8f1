"""lm-evaluation-harness's per-document scoring for the local ARC task: the pipeline's own
answer extraction applied to lm-eval's generation, so a difference in accuracy can only come
from a difference in the generated text."""

from ftmatrix.tasks import get_task

ARC = get_task("arc")


def process_results(doc: dict, results: list[str]) -> dict:
    reference = {"label": doc["label"], "labels": list(doc["labels"]), "choices": list(doc["choices"])}
    extracted = ARC.extract(results[0], reference)
    scores = ARC.score(extracted, reference)
    return {"acc": scores["correct"], "no_label": scores["no_label"]}
