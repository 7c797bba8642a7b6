"""The integration phase: merge, resolve, test, fix, bisect."""
