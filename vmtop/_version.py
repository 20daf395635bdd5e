"""The package version, in a module of its own so that any layer (the agent in a target, the
client, the CLI) can import it without importing the package's entry points."""

__version__ = "0.1.0"
