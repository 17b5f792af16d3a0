"""An OpenAI-compatible chat-completions client (standard library only), for caption drafts of
real photos, LLM-written VQA pairs (NOTES.md §6, steps 2 and 4) and LLM-judge scores.

Speaks the ``POST {base}/chat/completions`` JSON format that OpenAI, vLLM, llama.cpp's server,
Ollama and most gateways accept: ``{"model", "messages", "max_tokens", "temperature"}`` in,
``{"choices": [{"message": {"content": ...}}]}`` out. Images travel as base64 ``data:`` URLs in
``{"type": "image_url", "image_url": {"url": ...}}`` content parts. The API key is read from an
environment variable the user names (never from a file or the command line), and nothing
contacts the network unless a URL is configured.

Transient failures (connection errors, timeouts, HTTP 408/409/429/5xx) are retried with
exponential backoff; authentication failures (401/403) and other client errors end at once in
one :class:`~unif2ace.errors.UserError` naming the fix.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from ..errors import UserError

__all__ = ["ChatBackend", "add_backend_args", "backend_from_args", "image_data_url"]

CAPTION_PROMPT = (
    "Describe this person's face in detail in one paragraph of plain English: gender, age, "
    "hair (colour, length, texture, hairline, bangs), eyes and eyebrows, nose, lips, face "
    "shape, skin tone and texture, facial hair, make-up, accessories (glasses, hat, jewellery, "
    "mask), expression, emotion and head pose. Describe only what is visible."
)
VQA_PROMPT = (
    "Here is a description of a face:\n\n{caption}\n\nWrite {n} varied question-answer pairs "
    "about the face that the description answers (appearance, action, emotion and one "
    "reasoning question). Answers are short: Yes, No, or a few words. Reply with a JSON list "
    'only: [{{"question": "...", "answer": "..."}}, ...]'
)
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def add_backend_args(p) -> None:
    """The ``--llm-*`` options of every command that can talk to a chat endpoint."""
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL (.../v1)")
    p.add_argument("--llm-model", default=None, help="model name for the endpoint")
    p.add_argument("--llm-key-env", default=None, help="environment variable with the API key")
    p.add_argument("--llm-timeout", type=float, default=60.0)
    p.add_argument("--llm-retries", type=int, default=3)


def backend_from_args(args) -> ChatBackend | None:
    """The backend the ``--llm-*`` options describe (None without ``--llm-url``)."""
    if not args.llm_url:
        return None
    return ChatBackend(
        args.llm_url,
        args.llm_model or "",
        args.llm_key_env,
        timeout=args.llm_timeout,
        retries=args.llm_retries,
    )


def image_data_url(img: Image.Image, fmt: str = "PNG") -> str:
    """A ``data:image/png;base64,...`` URL of ``img`` (the ``image_url`` content format)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format=fmt)
    mime = "jpeg" if fmt.upper() in ("JPG", "JPEG") else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class ChatBackend:
    """A chat-completions endpoint.

    Attributes:
        url: the base URL (``https://host/v1``) or the full ``.../chat/completions`` URL.
        model: model name sent with every request.
        api_key_env: name of the environment variable holding the API key (``None``: send no
            ``Authorization`` header, e.g. a local server).
        timeout: seconds per HTTP request.
        retries: extra attempts after a transient failure.
        backoff: seconds before the first retry; doubles each time.
        max_tokens: completion length limit.
        temperature: sampling temperature (0: as deterministic as the server allows).
        sleep: the wait function between retries (tests pass a no-op).
    """

    url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    max_tokens: int = 400
    temperature: float = 0.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if not re.match(r"https?://", self.url or ""):
            raise UserError(f"--llm-url must start with http:// or https://, not {self.url!r}")
        if not self.model:
            raise UserError("an LLM backend needs a model name (--llm-model)")
        if self.retries < 0 or self.timeout <= 0:
            raise UserError("retries must be >= 0 and timeout > 0")
        u = self.url.rstrip("/")
        self.endpoint = u if u.endswith("/chat/completions") else u + "/chat/completions"
        self._key = None
        if self.api_key_env:
            self._key = os.environ.get(self.api_key_env)
            if not self._key:
                raise UserError(
                    f"environment variable {self.api_key_env} (the API key) is not set; "
                    f"export {self.api_key_env}=... or pass another --llm-key-env"
                )

    # ----------------------------------------------------------------------- transport
    def _request(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            raw = resp.read().decode("utf-8", "replace")
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise UserError(
                f"{self.endpoint} answered with something other than JSON ({raw[:80]!r}); "
                "is --llm-url an OpenAI-compatible API?"
            ) from None

    def complete(self, messages: list[dict]) -> str:
        """The assistant's reply to ``messages`` (retries transient failures)."""
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return _content(self._request(payload), self.endpoint)
            except urllib.error.HTTPError as err:
                body = err.read().decode("utf-8", "replace")[:300]
                if err.code in (401, 403):
                    env = self.api_key_env or "the variable named by --llm-key-env"
                    raise UserError(
                        f"{self.endpoint} refused the request (HTTP {err.code}: {body.strip()}); "
                        f"check the API key in {env} and the model's access rights"
                    ) from None
                if err.code not in _RETRY_STATUS:
                    raise UserError(
                        f"{self.endpoint} answered HTTP {err.code}: {body.strip()}; check "
                        "--llm-url and --llm-model"
                    ) from None
                last = f"HTTP {err.code}: {body.strip()}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = str(getattr(err, "reason", err))
        raise UserError(
            f"{self.endpoint} failed {self.retries + 1} times (last: {last}); check that the "
            "server is up and reachable, or raise --llm-retries"
        )

    # ------------------------------------------------------------------------ tasks
    def describe(self, images: Sequence[Image.Image], prompt: str = CAPTION_PROMPT) -> list[str]:
        """One caption per image (one request each)."""
        out = []
        for img in images:
            content = [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": image_data_url(img)}},
            ]
            out.append(self.complete([{"role": "user", "content": content}]).strip())
        return out

    def write_vqa(self, caption: str, n: int = 8) -> list[dict]:
        """``n`` question/answer pairs about a caption, in the shard's VQA format
        (``category`` from the attribute the question names; ``reasoning`` otherwise).
        An empty list when the reply holds no JSON list (the caller falls back)."""
        from ..data.caption_parser import parse_caption
        from ..data.ontology import BY_NAME

        reply = self.complete(
            [{"role": "user", "content": VQA_PROMPT.format(caption=caption, n=n)}]
        )
        out = []
        for qa in _json_list(reply)[:n]:
            q, a = str(qa.get("question", "")).strip(), str(qa.get("answer", "")).strip()
            if not q or not a:
                continue
            named = list(parse_caption(q))
            named = [x for x in named if x != "gender"] or named
            attr = named[0] if named else ""
            yn = re.match(r"(yes|no)\b", a.lower()) is not None
            out.append(
                {
                    "question": q,
                    "answer": a,
                    "category": BY_NAME[attr].group if attr else "reasoning",
                    "kind": "yes_no" if yn else "open",
                    "attribute": attr,
                }
            )
        return out


def _content(resp: dict, endpoint: str) -> str:
    try:
        return str(resp["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise UserError(
            f"{endpoint} did not answer in the chat-completions format (no "
            "choices[0].message.content); is it an OpenAI-compatible server?"
        ) from None


def _json_list(text: str) -> list[dict]:
    """The JSON list of objects in a reply (tolerates a fenced code block); [] if none."""
    m = re.search(r"\[.*\]", text, re.S)
    try:
        items = json.loads(m.group(0)) if m else []
    except json.JSONDecodeError:
        items = []
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []
