"""Training: the loop (in pieces), data-parallel helpers, and the study's training recipes."""
