"""MGS inside other training libraries.

- :mod:`mgs.integrations.trl`: ``MGSGRPOTrainer``, a drop-in subclass of TRL's ``GRPOTrainer``
  (``pip install 'mgs[trl]'``), and ``domain_rewards``, reward routing by domain for TRL.

Importing this package imports no optional library: each integration module imports its library
when it is imported itself (see docs/trl.md).
"""
