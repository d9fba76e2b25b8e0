"""Models: loading Hugging Face models and tokenizers by path or name, and the registry of models
built in-process by name (``model.name: tiny``: the built-in demo's, :mod:`mgs.tiny.model`).

Importing this package is light: transformers loads when a model is built or loaded.
"""
