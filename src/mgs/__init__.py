"""mgs: multi-domain GRPO with Modular Gradient Surgery.

Subpackages: ``mgs.surgery`` (the gradient-surgery engine, usable on its own), ``mgs.data``
(domains, mixtures, templates), ``mgs.rewards`` (math verifier, IFEval checkers, reward models),
``mgs.rl`` (rollouts, log-probs, advantages, losses), ``mgs.train`` (the GRPO loop), ``mgs.eval``
and ``mgs.report``.
"""

__version__ = "0.1.0"
