"""Model merging baselines: ``mgs merge`` (task arithmetic and TIES over runs from one base).

- :mod:`~mgs.merge.methods`: the merge rules as pure functions on tensors;
- :mod:`~mgs.merge.checkpoints`: reading the models (safetensors), checking that they share a
  base architecture, writing the merged Hugging Face directory;
- :mod:`~mgs.merge.command`: the command line.

Importing this package is light: torch loads when models are merged.
"""
