"""The ``openai`` engine: a model behind an OpenAI-compatible chat-completions endpoint.

One request per sample, through the official ``openai`` client: the eval file's chat
messages unchanged, ``temperature`` 0, ``max_tokens`` = the task's budget, the entry's
``extra_body`` (e.g. ``chat_template_kwargs``), streamed so that the time to first token
is measured (``stream_options.include_usage`` brings the token counts the provider bills).

What a paid key needs:

* **Retries** with exponential backoff and jitter on 429, 5xx, timeouts, connection errors
  and broken responses (malformed JSON, a stream cut before its finish reason); a
  ``Retry-After`` header sets the least wait, and pauses every request to the endpoint, not
  only the one that got it. The client's own retries are off, so every attempt is counted.
* **A per-request timeout** (``timeout_s``): for the connection, for each wait between
  streamed chunks, and for the whole answer.
* **Failures recorded**: a sample still failing after ``max_retries`` comes back with
  ``error`` set (never dropped, never an empty answer); other samples go on.
* **Stop at once** on 401, 403 and 404 (a wrong key, no access, a wrong model id or URL):
  ``EndpointStop`` names the model entry and the environment variable of the key.
* **Nothing paid twice**: every response is appended to a response store (one JSON line per
  sample, flushed as it arrives, keyed by a fingerprint of the request) that a rerun reads
  first (ftmatrix.endpoint).
* **Limits over the whole workflow**: ``max_concurrency`` requests in flight and
  ``requests_per_minute`` started, for all cells and jobs of one endpoint together (a lock
  file per concurrency slot, and a token bucket in a file under a lock), so parallel
  Snakemake jobs of one endpoint share its budget.

The key is read from the environment variable the entry names, when the client is made; it
is never written anywhere, and error messages name the variable, never its value.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ftmatrix.engines import Completion
from ftmatrix.errors import ModelError

# 401, 403, 404: retrying cannot help and every further request would fail the same way.
STOP_STATUSES = (401, 403, 404)
BACKOFF_CAP_S = 60.0


class EndpointStop(ModelError):
    """The endpoint refuses every request (wrong key, no access, unknown model or URL)."""


@dataclass
class Endpoint:
    """A model entry's ``api`` block (schemas/config.schema.yaml, definitions.api)."""

    name: str                       # the model entry's name
    base_url: str
    model: str
    key_env: str | None = None
    input_per_million_usd: float = 0.0
    output_per_million_usd: float = 0.0
    max_concurrency: int = 4
    requests_per_minute: float = 60.0
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    extra_body: dict = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: dict, *, base_url: str | None = None, model_id: str | None = None) -> "Endpoint":
        """The entry's endpoint; ``base_url`` and ``model_id`` replace the entry's for a server the job
        started itself (api.serve)."""
        api = entry["api"]
        return cls(name=entry["name"], base_url=(base_url or api["base_url"]).rstrip("/"),
                   model=model_id or api["model"],
                   key_env=api.get("key_env"), input_per_million_usd=float(api.get("input_per_million_usd", 0)),
                   output_per_million_usd=float(api.get("output_per_million_usd", 0)),
                   max_concurrency=int(api.get("max_concurrency", 4)),
                   requests_per_minute=float(api.get("requests_per_minute", 60)),
                   timeout_s=float(api.get("timeout_s", 60)), max_retries=int(api.get("max_retries", 5)),
                   backoff_s=float(api.get("backoff_s", 1.0)), extra_body=dict(api.get("extra_body") or {}))

    @property
    def key(self) -> str:
        """Which endpoint this is, for its shared limits: the URL and the model id."""
        return hashlib.sha256(f"{self.base_url}\n{self.model}".encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """What the generation record keeps of it (the key's variable name, never the key; no prices:
        the matrix prices the recorded tokens with the study's current prices)."""
        return {"name": self.name, "base_url": self.base_url, "model": self.model, "key_env": self.key_env,
                "max_concurrency": self.max_concurrency, "requests_per_minute": self.requests_per_minute,
                "timeout_s": self.timeout_s, "max_retries": self.max_retries, "extra_body": self.extra_body}

    def api_key(self) -> str:
        if not self.key_env:
            return "none"          # a server that takes no key; the client needs some string
        value = os.environ.get(self.key_env)
        if not value:
            raise EndpointStop(f"model {self.name!r}: the environment variable {self.key_env} (api.key_env) is "
                               f"not set; export it with the API key before running the study.")
        return value

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million_usd + output_tokens * self.output_per_million_usd) / 1e6


def request_fingerprint(endpoint: Endpoint, messages: list, max_tokens: int, served: str | None = None) -> str:
    """What decides a response: the endpoint (its URL and model id, or for a server the job starts,
    ``served``: what it serves, since its port is new each time), the messages, the budget and the
    extra fields. A saved response with the same fingerprint is reused instead of paid for again."""
    where = {"served": served} if served else {"base_url": endpoint.base_url, "model": endpoint.model}
    blob = json.dumps({**where, "messages": messages,
                       "max_tokens": max_tokens, "temperature": 0, "extra_body": endpoint.extra_body},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- shared limits


class SharedLimits:
    """``max_concurrency`` requests in flight and ``requests_per_minute`` started, for every
    process of the workflow that talks to one endpoint (files under ``state_dir/<endpoint key>``).

    Concurrency: one lock file per slot; a request holds a slot's lock while it runs (the
    operating system frees it if the process dies). Rate: a token bucket (one second's worth of
    requests, at least one) kept in a JSON file under a lock; it also holds ``not_before``, the
    time until which a ``Retry-After`` paused the endpoint."""

    def __init__(self, endpoint: Endpoint, state_dir: str | Path):
        self.folder = Path(state_dir) / endpoint.key
        self.folder.mkdir(parents=True, exist_ok=True)
        self.slots = endpoint.max_concurrency
        self.rate = endpoint.requests_per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.bucket = self.folder / "bucket.json"

    def _bucket_lock(self):
        from filelock import FileLock

        return FileLock(str(self.bucket) + ".lock", timeout=60)

    def _read_state(self, now: float) -> dict:
        """The shared bucket (a full one where none was written yet, or it is unreadable)."""
        try:
            return json.loads(self.bucket.read_text())
        except (OSError, ValueError):
            return {"tokens": self.capacity, "updated": now, "not_before": 0.0}

    def _take_token(self) -> float:
        """Take a token if one is there (returns 0), else the seconds to wait."""
        with self._bucket_lock():
            now = time.time()
            state = self._read_state(now)
            if now < state.get("not_before", 0.0):
                return state["not_before"] - now
            tokens = min(self.capacity, state["tokens"] + (now - state["updated"]) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            if not wait:
                tokens -= 1.0
            self.bucket.write_text(json.dumps({"tokens": tokens, "updated": now,
                                               "not_before": state.get("not_before", 0.0)}))
            return wait

    def pause(self, seconds: float) -> None:
        """Hold every request to the endpoint for ``seconds`` (a Retry-After)."""
        with self._bucket_lock():
            now = time.time()
            state = self._read_state(now)
            state["not_before"] = max(state.get("not_before", 0.0), now + seconds)
            self.bucket.write_text(json.dumps(state))

    @contextlib.contextmanager
    def request(self):
        """Hold a concurrency slot and a rate token for one request."""
        from filelock import FileLock, Timeout

        held = None
        while held is None:
            for slot in range(self.slots):
                lock = FileLock(str(self.folder / f"slot{slot}.lock"), timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    continue
                held = lock
                break
            else:
                time.sleep(0.02 + random.random() * 0.03)
        try:
            while (wait := self._take_token()) > 0:
                time.sleep(min(wait, 5.0))
            yield
        finally:
            held.release()


# --------------------------------------------------------------------------- requests


class _Retry(Exception):
    """An attempt that may succeed when tried again (``wait_s``: the least wait, from Retry-After)."""

    def __init__(self, why: str, wait_s: float = 0.0):
        super().__init__(why)
        self.why = why
        self.wait_s = wait_s


def _retry_after(response) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date); 0 when there is none."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 0.0


class EndpointClient:
    """Streams one chat completion per sample, with the retries, limits and stops above."""

    def __init__(self, endpoint: Endpoint, state_dir: str | Path):
        import openai

        self.openai = openai
        self.endpoint = endpoint
        self.limits = SharedLimits(endpoint, state_dir)
        self.client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key(), max_retries=0,
                                    timeout=endpoint.timeout_s)
        self._transport_errors = _transport_errors()

    def _stop(self, status: int, exc) -> EndpointStop:
        e = self.endpoint
        what = {401: "the API key was refused", 403: "the key has no access to this model",
                404: "the model id or the URL is unknown to the server"}[status]
        key = (f"the key in the environment variable {e.key_env} (api.key_env)" if e.key_env
               else "no key (api.key_env is null)")
        return EndpointStop(f"model {e.name!r}: {e.base_url} answered {status} ({what}) for model id {e.model!r} "
                            f"with {key}. Check api.base_url, api.model and the key, then run again; responses "
                            f"saved so far are kept. Server said: {str(exc)[:300]}")

    def _attempt(self, messages: list, max_tokens: int) -> Completion:
        openai = self.openai
        e = self.endpoint
        started = time.perf_counter()
        ttft = None
        parts: list[str] = []
        finish = usage = None
        try:
            stream = self.client.chat.completions.create(
                model=e.model, messages=messages, temperature=0, max_tokens=max_tokens, stream=True,
                stream_options={"include_usage": True}, extra_body=e.extra_body or None)
            with contextlib.closing(stream):
                for chunk in stream:
                    if time.perf_counter() - started > e.timeout_s:
                        raise _Retry(f"no complete answer within timeout_s = {e.timeout_s:g} s")
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or []:
                        text = getattr(choice.delta, "content", None)
                        if text:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            parts.append(text)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in STOP_STATUSES:
                raise self._stop(status, exc) from None
            if status == 429 or status >= 500 or status == 408:
                raise _Retry(f"HTTP {status}: {str(exc)[:200]}", _retry_after(exc.response)) from None
            raise _Failed(f"HTTP {status}: {str(exc)[:300]}") from None
        except openai.APITimeoutError:
            raise _Retry(f"timed out after {e.timeout_s:g} s (api.timeout_s)") from None
        except openai.APIConnectionError as exc:
            raise _Retry(f"connection error: {exc.__cause__ or exc}") from None
        except openai.APIError as exc:       # e.g. an error event inside the stream
            raise _Retry(f"broken response: {str(exc)[:200]}") from None
        except (ValueError, *self._transport_errors) as exc:    # malformed JSON, a cut connection
            raise _Retry(f"broken response: {type(exc).__name__}: {str(exc)[:200]}") from None
        latency = time.perf_counter() - started
        if finish is None:
            raise _Retry("the stream ended before its finish reason (cut mid-answer)")
        if usage is None:
            raise _Failed("the response carries no token usage (stream_options.include_usage); the endpoint "
                          "cannot be costed — use a server that reports usage in streamed responses")
        return Completion(id="", text="".join(parts), input_tokens=int(usage.prompt_tokens),
                          output_tokens=int(usage.completion_tokens), finish_reason=finish, latency_s=latency,
                          ttft_s=ttft if ttft is not None else latency)

    def complete(self, sample_id: str, messages: list, max_tokens: int) -> Completion:
        """One sample, retried as above; a Completion with ``error`` when it still fails."""
        e = self.endpoint
        why = ""
        for attempt in range(e.max_retries + 1):
            try:
                with self.limits.request():
                    out = self._attempt(messages, max_tokens)
                out.id, out.attempts = sample_id, attempt + 1
                return out
            except _Failed as failed:
                return Completion(id=sample_id, text=None, input_tokens=None, output_tokens=None,
                                  finish_reason=None, error=str(failed), attempts=attempt + 1)
            except _Retry as retry:
                why = retry.why
                if attempt == e.max_retries:
                    break
                backoff = min(BACKOFF_CAP_S, e.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.5)
                if retry.wait_s:
                    self.limits.pause(retry.wait_s)
                time.sleep(max(backoff, retry.wait_s))
        return Completion(id=sample_id, text=None, input_tokens=None, output_tokens=None, finish_reason=None,
                          error=f"failed after {e.max_retries + 1} attempts; last: {why}",
                          attempts=e.max_retries + 1)


class _Failed(Exception):
    """An attempt that retrying would not change (e.g. a 400 for this prompt): the sample fails."""


def _transport_errors() -> tuple:
    """The HTTP library's transport errors (cut connections, read timeouts inside a stream)."""
    errors = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        errors.append(module.TransportError)
        if hasattr(module, "StreamError"):
            errors.append(module.StreamError)
    return tuple(errors)


def run_requests(client: EndpointClient, requests: list[tuple[str, list, int]], on_done, *,
                 workers: int | None = None) -> None:
    """Send ``(id, messages, max_tokens)`` requests with up to ``workers`` in flight (the endpoint's
    max_concurrency), calling ``on_done(completion)`` in this thread as each finishes. An
    EndpointStop cancels what has not started and is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    workers = max(1, workers or client.endpoint.max_concurrency)
    stop = threading.Event()
    pending = iter(requests)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running = set()

        def submit_next() -> bool:
            item = next(pending, None)
            if item is None or stop.is_set():
                return False
            running.add(pool.submit(client.complete, *item))
            return True

        for _ in range(workers):
            if not submit_next():
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.discard(future)
                try:
                    completion = future.result()
                except EndpointStop:
                    stop.set()
                    for other in running:
                        other.cancel()
                    raise
                on_done(completion)
                submit_next()
