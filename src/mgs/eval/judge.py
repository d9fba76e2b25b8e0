"""Pairwise judging by an LLM behind an OpenAI-compatible ``/chat/completions`` endpoint.

For each instruction the judge sees our response and the reference response as "Assistant A" and
"Assistant B" — ours is A on even-numbered samples and B on odd ones, so a judge's preference for
a position cancels out over a benchmark — and ends its answer with ``[[A]]``, ``[[B]]`` or
``[[C]]`` (a tie). The prompt is MT-Bench's pairwise judge prompt (Zheng et al. 2023, FastChat,
Apache-2.0). Only the standard library is used (``urllib``); requests run on a few threads.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
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
        self.url = endpoint(cfg.url)
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

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
                error = f"HTTP {exc.code}: {exc.read()[:200].decode('utf-8', 'replace')}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error = f"unexpected answer ({type(exc).__name__}: {exc})"
        return error, False
