"""Generation engines: one small interface, several engines.

An engine turns a cell's evaluation prompts (the eval file's chat messages) into one
``Completion`` per sample: the generated text, its token counts and why it stopped, and,
where the engine measures them, the request's latency and time to first token.

=================  =====================================================================
engine             what generates
=================  =====================================================================
``transformers``   the reference: ``generate()`` in this process (ftmatrix.evaluate)
``vllm``           one offline vLLM batch in vLLM's own environment, from the same
                   rendered token ids (ftmatrix.engines.vllm_engine; evaluate.engine)
``openai``         an OpenAI-compatible chat-completions endpoint: an API model or a
                   self-hosted server (vLLM, TGI, Ollama, transformers serve);
                   ftmatrix.engines.openai_endpoint
=================  =====================================================================

Every engine writes the same files (``generations.jsonl`` of ``GenerationRow`` and
``generation.json`` of ``GenerationRecord``); scoring, aggregation and the journal read
those alone and never ask which engine produced a text. The record says which
(``GenerationRecord.engine``), so the journal can name it.

A sample an engine could not generate (an endpoint that kept failing after every retry) is
recorded with ``error`` set and no text; scoring leaves it out and the cell counts it
(``failed``), so it is never scored as an empty answer.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("transformers", "vllm", "openai")


@dataclass
class Completion:
    """One sample's generation, as every engine returns it."""

    id: str
    text: str | None              # None when the sample failed
    input_tokens: int | None
    output_tokens: int | None     # generated tokens, the stop token included where the engine counts it
    finish_reason: str | None     # 'stop' (end of turn) or 'length' (the token budget)
    latency_s: float | None = None
    ttft_s: float | None = None
    error: str | None = None      # why the sample failed (after every retry)
    attempts: int = 1

    @property
    def failed(self) -> bool:
        return self.error is not None


def engine_of(model: dict, evaluate: dict | None = None) -> str:
    """The engine that generates a model entry's cells: its endpoint's for source api, else the
    entry's own ``engine``, else ``evaluate.engine``."""
    if model["source"] == "api":
        return "openai"
    return model.get("engine") or (evaluate or {}).get("engine") or "transformers"
