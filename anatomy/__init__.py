"""prompt-anatomy: audit how much of a text encoder a prompt workload really uses."""

__version__ = "0.1.0"
