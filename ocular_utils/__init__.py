"""Helpers for the reproducible study of compact CNNs for on-device ocular verification.

The package follows the study's data flow: ``data`` -> ``models`` -> ``training`` ->
``pruning`` / ``structured`` / ``distill`` -> ``evaluation`` / ``verification`` ->
``latency`` / ``costs`` / ``export`` -> ``results`` -> ``study`` (the runner) and ``book``.
"""

__version__ = "0.1.0"
