"""Pairwise judging by an LLM behind an OpenAI-compatible ``/chat/completions`` endpoint.

For each instruction the judge sees our response and the reference response as "Assistant A" and
"Assistant B" — ours is A on even-numbered samples and B on odd ones, so a judge's preference for
a position cancels out over a benchmark — and ends its answer with ``[[A]]``, ``[[B]]`` or
``[[C]]`` (a tie). The prompt is MT-Bench's pairwise judge prompt (Zheng et al. 2023, FastChat,
Apache-2.0). Only the standard library is used (``urllib``); requests run on a few threads.

Secrets never leave through an error: the API key, ``user:password@`` credentials of the URL
(sent as HTTP Basic auth, never as part of the URL) and anything that looks like a bearer token
are redacted from every error text before it is cut short, shown or stored.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from mgs.errors import MgsError
from mgs.eval.config import JudgeConfig

Verdict = Literal["A", "B", "tie"]

JUDGE_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user question displayed below. You should choose the assistant that "
    "follows the user's instructions and answers the user's question better. Your evaluation "
    "should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, "
    "and level of detail of their responses. Begin your evaluation by comparing the two "
    "responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow "
    "the length of the responses to influence your evaluation. Do not favor certain names of the "
    "assistants. Be as objective as possible. After providing your explanation, output your "
    'final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" '
    'if assistant B is better, and "[[C]]" for a tie.'
)
_USER_TEMPLATE = (
    "[User Question]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
REDACTED = "[redacted]"
_SECRET_PATTERNS = (
    # "Bearer abc.def" / "Basic dXNlcjpwdw==" (an echoed Authorization header)
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1\2{REDACTED}"),
    # authorization: x / "api_key": "x" / x-api-key=x (headers, JSON, query strings)
    (
        re.compile(
            r"\b(authorization|x-api-key|api[-_]?key|access[-_]?token)(\"?\s*[:=]\s*\"?)"
            r"(?!Bearer\b|Basic\b)[^\s\",}&]+",
            re.IGNORECASE,
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),  # OpenAI-style keys
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@"), rf"\1{REDACTED}@"),  # URL userinfo
)
_TAGGED = re.compile(r"\[\[\s*(A|B|C)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"^\W*(?:assistant\s+)?(A|B|C|tie)\W*$", re.IGNORECASE)


class JudgeError(MgsError):
    """The judge endpoint could not be used (unreachable, or every request failed)."""


@dataclass(frozen=True)
class Judgement:
    """One pairwise comparison: the verdict (None when unreadable or failed) and where ours was."""

    ours_position: Literal["A", "B"]
    verdict: Verdict | None
    win: float | None  # 1 ours better, 0.5 tie, 0 reference better; None: no usable verdict
    raw: str  # the judge's answer, or the error of the last attempt


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` with every secret in ``secrets`` and anything shaped like a credential (bearer
    tokens, ``authorization:`` / ``api_key=`` values, ``sk-...`` keys, URL ``user:pw@``)
    replaced by ``[redacted]``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host/v1`` -> ``("http://host/v1", "user", "pw")`` (decoded); a URL without
    credentials comes back unchanged with ``(None, None)``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, urllib.parse.unquote(user), urllib.parse.unquote(password)


def public_url(url: str) -> str:
    """``url`` without its ``user:password@`` part: what may be printed or saved in results."""
    return split_credentials(url)[0]


def endpoint(url: str) -> str:
    """``http://host/v1`` -> ``http://host/v1/chat/completions`` (kept when already there)."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def ours_position(index: int) -> Literal["A", "B"]:
    """Ours is assistant A on even sample indices and B on odd ones."""
    return "A" if index % 2 == 0 else "B"


def build_request(
    cfg: JudgeConfig, question: str, ours: str, reference: str, index: int
) -> dict[str, Any]:
    """The JSON body of the chat-completions request judging sample ``index``."""
    a, b = (ours, reference) if ours_position(index) == "A" else (reference, ours)
    return {
        "model": cfg.model,
        "messages": [
            {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
            {
                "role": "user",
                "content": _USER_TEMPLATE.format(question=question, answer_a=a, answer_b=b),
            },
        ],
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
    }


def parse_verdict(text: str) -> Verdict | None:
    """The judge's verdict: the last ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (C is a tie), or a bare
    answer such as ``A`` or ``tie``; None when there is none."""
    tagged = _TAGGED.findall(text)
    if tagged:
        letter = tagged[-1].upper()
    else:
        bare = _BARE.match(text.strip())
        if not bare:
            return None
        letter = bare.group(1).upper()
    return "tie" if letter in ("C", "TIE") else letter  # type: ignore[return-value]


def outcome(verdict: Verdict | None, position: Literal["A", "B"]) -> float | None:
    """Our score from a verdict: 1 when ours won, 0.5 for a tie, 0 when the reference won."""
    if verdict is None:
        return None
    if verdict == "tie":
        return 0.5
    return 1.0 if verdict == position else 0.0


class ChatJudge:
    """Judges (question, ours, reference) triples against ``cfg``'s endpoint."""

    def __init__(self, cfg: JudgeConfig) -> None:
        self.cfg = cfg
        bare, user, password = split_credentials(cfg.url)
        self.url = endpoint(bare)  # what requests go to and errors name: no credentials
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self.headers = {"Content-Type": "application/json"}
        secrets = [key]
        if user is not None:  # credentials in the URL: HTTP Basic auth (urllib cannot use them)
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
            secrets += [token, password or "", f"{user}:{password}"]
        elif key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.secrets = tuple(s for s in secrets if s)

    def judge(
        self,
        questions: list[str],
        ours: list[str | None],
        references: list[str],
        on_done: Callable[[], None] | None = None,
    ) -> list[Judgement]:
        """One judgement per sample, in order. A missing response of ours (``None``) loses
        without a request. Raises :class:`JudgeError` when every request failed."""

        def one(i: int) -> Judgement:
            position = ours_position(i)
            if ours[i] is None:
                result = Judgement(position, None, 0.0, "no response: counted as a loss")
            else:
                body = build_request(self.cfg, questions[i], ours[i] or "", references[i], i)
                text, ok = self._post(body)
                verdict = parse_verdict(text) if ok else None
                result = Judgement(position, verdict, outcome(verdict, position), text)
            if on_done is not None:
                on_done()
            return result

        with ThreadPoolExecutor(max_workers=self.cfg.workers) as pool:
            results = list(pool.map(one, range(len(questions))))
        asked = [r for r, o in zip(results, ours) if o is not None]
        if asked and all(r.verdict is None for r in asked):
            raise JudgeError(
                f"the judge at {self.url} gave no usable verdict for any of {len(asked)} "
                f"requests, e.g. {asked[0].raw[:200]!r}; check --judge-url and --judge-model"
            )
        return results

    def _post(self, body: dict[str, Any]) -> tuple[str, bool]:
        """``(answer text, True)``, or ``(last error, False)`` after ``retries`` more attempts."""
        data = json.dumps(body).encode("utf-8")
        error = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 30.0))  # 0.5 s, 1 s, 2 s...
            request = urllib.request.Request(self.url, data=data, headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                return str(payload["choices"][0]["message"]["content"] or ""), True
            except urllib.error.HTTPError as exc:
                # The whole (bounded) body is redacted before it is cut: a key straddling the cut
                # would otherwise leave a prefix behind.
                body = redact(exc.read(1 << 16).decode("utf-8", "replace"), self.secrets)
                error = f"HTTP {exc.code}: {body[:200]}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                error = redact(f"{type(exc).__name__}: {exc}", self.secrets)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error = redact(f"unexpected answer ({type(exc).__name__}: {exc})", self.secrets)
        return error, False
