"""The work one math-reward worker process does for one sample: math-verify's parse and verify.

Imported only inside the worker processes of :mod:`mgs.rewards.math_reward` (and by the fork
server, which preloads it), so the trainer never pays for sympy. math-verify's own signal-based
timeouts are switched off (``parsing_timeout=None``, ``timeout_seconds=None``): the pool's hard
deadline is what bounds a sample.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# math-verify warns once per process that its timeout is off: that is deliberate here.
logging.getLogger("math_verify").setLevel(logging.ERROR)

# The gold answer is bare LaTeX ("\frac{1}{2}", "x=5", "(3, \frac{\pi}{2})"): wrap it in $...$ and
# let math-verify's LaTeX extraction (and its plain-expression one, for "1/2") read it.
_GOLD_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())
# The prediction is the content of the response's last box, re-boxed: boxed matching first.
_PRED_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


@lru_cache(maxsize=4096)
def parse_gold(answer: str) -> list:
    """math-verify's reading of a gold answer (bare LaTeX, or text that already has a box)."""
    text = answer if "\\boxed" in answer else f"${answer}$"  # "$x$" becomes "$$x$$": still fine
    return parse(text, extraction_config=_GOLD_CONFIG, parsing_timeout=None)


def verify_boxed(content: str, answer: str) -> bool:
    """True when the boxed ``content`` is equivalent to the gold ``answer`` per math-verify."""
    gold = parse_gold(answer)
    if not gold:
        raise ValueError(f"math-verify cannot read the gold answer {answer[:80]!r}")
    pred = parse(f"\\boxed{{{content}}}", extraction_config=_PRED_CONFIG, parsing_timeout=None)
    if not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=None))
