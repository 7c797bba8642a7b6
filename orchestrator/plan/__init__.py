"""plan.yaml as models, loaded and checked; the team graph; role profiles (the plan layer)."""
