"""What Redis holds: statuses, runs, teams, attempts, the lease, the server (the state layer)."""
