"""The engine's own test project: a domain of its own (ledgers of numbered records) and a test-only
operation over it, so that the engine's tests run on what any host would have, not on the demo.
Installed by tests/settings.py only."""
