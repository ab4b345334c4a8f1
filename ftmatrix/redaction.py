"""Secrets kept out of what the project writes: access tokens and passwords in URLs are masked
in the journal and in the rule params Snakemake stores (.snakemake/metadata)."""

from __future__ import annotations

import re

# Hugging Face tokens, GitHub tokens (classic ghp_/gho_/ghu_/ghs_/ghr_ and fine-grained
# github_pat_), OpenAI-style secret keys, and the password of a URL's user:password@.
PATTERNS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), "hf_***"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "gh*_***"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), "github_pat_***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "sk-***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@"), r"\1\2:***@"),
)


def redact(text: str) -> str:
    """``text`` with every token or URL password masked."""
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value):
    """The same, through the strings of a nested structure (a config slice)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value
