"""The last boxed answer: nesting, escaped braces, \\fbox, unclosed boxes, linear time."""

from __future__ import annotations

import time

import pytest

from mgs.rewards.boxed import last_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{42}", "42"),
        (r"first \boxed{1}, finally \boxed{2}.", "2"),
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces do not group
        (r"\fbox{7}", "7"),
        (r"\boxed {3}", "3"),
        (r"\boxed{\boxed{5}}", r"\boxed{5}"),  # the box that closes last
        (r"\boxed{1} and \boxed{2", "1"),  # an unclosed box is not an answer
        (r"no box here {x}", None),
        (r"\boxed{", None),
        ("}}}\\boxed{9}}}", "9"),  # stray closers are ignored
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_deep_nesting_and_megabyte_inputs_are_linear():
    deep = r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}"
    unclosed = r"\boxed{" * 150_000  # ~1 MB of openers: quadratic rescans would take minutes
    start = time.perf_counter()
    assert last_boxed(deep) == "{" * 10_000 + "1" + "}" * 10_000
    assert last_boxed(unclosed) is None
    assert last_boxed("x" * 1_000_000 + r"\boxed{2}") == "2"
    assert time.perf_counter() - start < 2.0
