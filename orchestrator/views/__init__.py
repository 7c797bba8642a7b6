"""What a run looks like: the board, log lines, the report (the views layer, read only)."""
