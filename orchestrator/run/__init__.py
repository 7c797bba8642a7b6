"""A run: scheduling, attempts, resume and cancel, integration, its end (the run layer)."""
