"""One training or evaluation prompt of one domain: the unit every other part of ``mgs.data`` moves.

An :class:`Example` keeps the conversation as chat messages (what a reward model scores), the
rendered prompt text (what the policy sees, filled in by :mod:`mgs.data.templates`), a
``reference`` mapping holding what the domain's reward needs, and ``metadata``: the source's other
columns, passed through untouched for logs and analysis. Reference keys by convention:

- math: ``answer`` (the ground-truth final answer, compared by math-verify);
- instruction following: ``instruction_id_list`` and ``kwargs`` (IFEval's instruction specs);
- chat: nothing (a reward model scores the response).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mgs.errors import DataError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """A prompt of one domain with the reference its reward needs."""

    uid: str  # unique across all sources: "<source name>/<row id>"
    domain: str  # routes the example to its reward and to its gradient buffer
    messages: tuple[Message, ...]  # the conversation so far; the last message is the user's
    reference: Mapping[str, Any] = field(default_factory=dict)
    prompt: str = ""  # the rendered prompt text; "" until a template renders it
    metadata: Mapping[str, Any] = field(default_factory=dict)  # passthrough columns
    suffix: str = ""  # the end of the last user message the source appended (an instruction)

    @property
    def question(self) -> str:
        """The last user message: the request the response answers."""
        return self.messages[-1]["content"]

    def with_prompt(self, prompt: str) -> Example:
        return dataclasses.replace(self, prompt=prompt)

    def with_question(self, question: str) -> Example:
        """A copy whose last user message is ``question`` (the prompt is left to re-render)."""
        last = {**self.messages[-1], "content": question}
        return dataclasses.replace(self, messages=(*self.messages[:-1], last))


def to_messages(value: Any, where: str) -> tuple[Message, ...]:
    """A prompt cell -> validated chat messages.

    A string becomes one user message; a list of ``{"role", "content"}`` mappings (the verl /
    Hugging Face chat format) is checked and copied. ``where`` names the row in error messages.
    """
    if isinstance(value, str):
        messages: list[Message] = [{"role": "user", "content": value}]
    elif isinstance(value, (list, tuple)) and value:
        messages = [_message(m, f"{where}, message {i}") for i, m in enumerate(value)]
    else:
        raise DataError(
            f"{where}: the prompt must be a string or a non-empty list of "
            f"{{role, content}} messages, got {_short(value)}"
        )
    last = messages[-1]
    if last["role"] != "user":
        raise DataError(
            f"{where}: the conversation must end with a user message, but it ends with "
            f"{last['role']!r}; drop the trailing {last['role']} turn from the data"
        )
    if not last["content"].strip():
        raise DataError(f"{where}: the prompt is empty; remove the row or fill in its text")
    return tuple(messages)


def _message(value: Any, where: str) -> Message:
    if not isinstance(value, Mapping) or "role" not in value or "content" not in value:
        raise DataError(
            f"{where}: expected a mapping with 'role' and 'content', got {_short(value)}"
        )
    role, content = value["role"], value["content"]
    if role not in ROLES:
        raise DataError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise DataError(f"{where}: content must be text, got {_short(content)}")
    return {"role": role, "content": content}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
