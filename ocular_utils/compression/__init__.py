"""Compression: a registry of methods (unstructured masks, channel pruning) and knowledge distillation.

Importing the package registers the built-in methods.
"""
from . import channels, unstructured  # noqa: F401  (registers the built-in methods)
from .registry import METHODS, CompressionMethod, compress, get_method, register  # noqa: F401
