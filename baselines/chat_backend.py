"""An optional OpenAI-compatible chat backend (any hosted or local VLM server) for prompting methods.

Configured only through environment variables, so a key never lands in a config file, a result
row or a command line:

    BENCHMARKS_CHAT_BASE_URL   e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1 (required)
    BENCHMARKS_CHAT_MODEL      model name sent in the request (required)
    BENCHMARKS_CHAT_API_KEY    bearer token (optional: local servers often need none)
    BENCHMARKS_CHAT_TIMEOUT_S  per-request timeout in seconds (default 60)

`ChatBackend.ask` never raises: HTTP errors, timeouts, malformed JSON and answers that do not
start with Yes/No come back as a failed `ChatAnswer` with a short error. 429 and 5xx responses
and network errors are retried a bounded number of times (a numeric Retry-After when the server
sends one, else exponential backoff; both capped). The key is sent only in the Authorization header; redirects
are refused so it is never forwarded to another host, and every reply or error string is
scrubbed of it before it is returned or logged.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

ENV_BASE_URL = "BENCHMARKS_CHAT_BASE_URL"
ENV_MODEL = "BENCHMARKS_CHAT_MODEL"
ENV_API_KEY = "BENCHMARKS_CHAT_API_KEY"
ENV_TIMEOUT = "BENCHMARKS_CHAT_TIMEOUT_S"

_LOCATION_RE = re.compile(r"\b(top[ -]left|top[ -]right|bottom[ -]left|bottom[ -]right|top|bottom|left|right|"
                          r"cent(?:er|re)|middle)\b", re.IGNORECASE)
_YES_NO_RE = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)
_MAX_REPLY_CHARS = 500


@dataclass(frozen=True)
class ChatConfig:
    """Where and how to reach the server. `api_key` is excluded from repr."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_image_side: int = 512

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"{ENV_BASE_URL} must be an http(s) URL")
        if not self.model:
            raise ValueError(f"{ENV_MODEL} must name the model to ask")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChatConfig | None:
        """The configuration from the environment, or None when no base URL is set."""
        env = os.environ if environ is None else environ
        base_url = env.get(ENV_BASE_URL, "").strip()
        if not base_url:
            return None
        timeout = env.get(ENV_TIMEOUT, "").strip()
        return cls(base_url=base_url, model=env.get(ENV_MODEL, "").strip(),
                   api_key=env.get(ENV_API_KEY) or None, timeout_s=float(timeout) if timeout else 60.0)


@dataclass(frozen=True)
class ChatAnswer:
    """One reply. `is_anomalous` is None when the call failed or the reply was unparsable.

    text: the reply (scrubbed of the key, at most 500 characters) or None when none came back.
    location: the 3x3 grid word found in the reply, if any.
    """

    text: str | None
    is_anomalous: bool | None
    location: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.is_anomalous is not None


def parse_decision(text: str) -> bool | None:
    """Yes -> True, No -> False from the reply's first word; None when it starts with neither."""
    match = _YES_NO_RE.match(text)
    return None if match is None else match.group(1).lower() == "yes"


def parse_location(text: str) -> str | None:
    """The first 3x3 grid word in `text` ("top left", ..., "center"), normalised; None if none."""
    match = _LOCATION_RE.search(text)
    if match is None:
        return None
    word = match.group(1).lower().replace("-", " ")
    return "center" if word in ("centre", "middle") else word


def image_data_url(image: np.ndarray, max_side: int = 512) -> str:
    """RGB uint8 `(H, W, 3)` -> `data:image/png;base64,...`, downscaled so its longer side is <= max_side."""
    pil = Image.fromarray(np.ascontiguousarray(image))
    scale = max_side / max(pil.size)
    if scale < 1.0:
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BICUBIC)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects would carry the Authorization header to wherever the server points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ChatBackend:
    """Asks an OpenAI-compatible `/chat/completions` endpoint about one image at a time."""

    def __init__(self, config: ChatConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_RefuseRedirects)
        self._url = config.base_url.rstrip("/") + "/chat/completions"

    def ask(self, image: np.ndarray, question: str) -> ChatAnswer:
        """Send `question` and the image; parse the reply's Yes/No and grid location. Never raises."""
        try:
            reply = self._complete(image, question)
        except Exception as exc:  # any failure is a failed answer for this image, never a crash
            error = self.scrub(f"{type(exc).__name__}: {exc}")
            log.warning("chat backend %s failed: %s", self.config.model, error)
            return ChatAnswer(None, None, None, error)
        text = self.scrub(reply.strip())[:_MAX_REPLY_CHARS]
        decision = parse_decision(text)
        if decision is None:
            log.warning("chat backend %s gave an unparsable answer: %r", self.config.model, text[:80])
            return ChatAnswer(text, None, None, "unparsable answer (does not start with Yes or No)")
        return ChatAnswer(text, decision, parse_location(text) if decision else None)

    def scrub(self, text: str) -> str:
        """`text` with the API key (if any) replaced by `***`."""
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    def _complete(self, image: np.ndarray, question: str) -> str:
        payload = {
            "model": self.config.model,
            "temperature": 0,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": question},
                {"type": "image_url", "image_url": {"url": image_data_url(image, self.config.max_image_side)}},
            ]}],
        }
        body = json.dumps(payload).encode("utf-8")
        attempts = self.config.max_retries + 1
        last: _Retryable | None = None
        for attempt in range(attempts):
            if last is not None:
                delay = last.retry_after if last.retry_after is not None else self.config.backoff_s * 2 ** (attempt - 1)
                delay = min(delay, self.config.max_backoff_s)
                log.info("chat backend: %s; retrying in %.1f s", self.scrub(str(last)), delay)
                self._sleep(delay)
            try:
                return _reply_text(self._post(body))
            except _Retryable as exc:
                last = exc
        raise RuntimeError(f"gave up after {attempts} attempts: {last}")

    def _post(self, body: bytes) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}", _retry_after(exc.headers.get("Retry-After"))) from None
            raise RuntimeError(f"HTTP {exc.code} from the chat server") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"network error: {type(reason).__name__}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise RuntimeError("the chat server did not return JSON") from None


def _reply_text(response: dict) -> str:
    """The assistant message of a chat completion (string content or a list of text parts)."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise RuntimeError("the chat server's JSON has no choices[0].message.content") from None
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise RuntimeError("the chat server's message content is not text")
    return content


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date; fall back to our own backoff
        return None
