"""Verification: scores of trials (cosine similarity of embeddings) and the metrics on them."""
