"""Deployment: exports for phone runtimes, latency measurement, on-device measurements."""
