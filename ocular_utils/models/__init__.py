"""Models: verification networks, parameter and MAC counts, model files."""
