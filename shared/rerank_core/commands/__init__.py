"""Subcommands of the ``crossrank`` CLI, one module each, imported only when run."""
