"""Root pytest configuration: shared fixtures live in tests/support/, one module per area."""

pytest_plugins = [
    "tests.support.leaks",  # first: its session check runs after every other teardown
    "tests.support.redis",
    "tests.support.gitrepo",
    "tests.support.agents",
    "tests.support.ray",  # the Ray cluster of the ray tier (skipped without Ray)
]
