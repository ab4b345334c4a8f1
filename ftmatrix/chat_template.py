"""The chat template of the tokenizers the project trains (demo and test models).

ChatML turns, as Qwen3 writes them::

    <|im_start|>system\n...<|im_end|>\n
    <|im_start|>user\n...<|im_end|>\n
    <|im_start|>assistant\n<think>\n\n</think>\n\n...<|im_end|>\n

Assistant turns after the last user message carry a think block (empty unless the
message has ``reasoning_content`` or writes ``<think>…</think>`` itself); earlier assistant
turns are shown without it, so a conversation's history stays short. With
``add_generation_prompt`` the text ends in ``<|im_start|>assistant\n``, and with
``enable_thinking=False`` also in an empty think block, so the model answers at once.
A prompt rendered with the generation prompt is therefore always a prefix of the same
prompt rendered with its answer, which is what prompt/completion training relies on.
"""

from __future__ import annotations

import functools

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

CHAT_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else '' -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is string else '' -%}"
    "{%- if not reasoning and '</think>' in content -%}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] -%}"
    "{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if loop.index0 > ns.last_user -%}"
    "{{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{{- content.lstrip('\\n') + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


@functools.lru_cache(maxsize=None)
def _compiled(template: str):
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # The same environment settings transformers uses for apply_chat_template.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    return env.from_string(template)


def render_chat(messages: list[dict], *, add_generation_prompt: bool = False,
                enable_thinking: bool | None = None, template: str = CHAT_TEMPLATE) -> str:
    """Render messages to text without loading a tokenizer (as ``apply_chat_template(tokenize=False)``)."""
    kwargs = {"messages": messages, "add_generation_prompt": add_generation_prompt}
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    return _compiled(template).render(**kwargs)
