"""How a ``convnp`` command ends: its exit statuses and the errors reported as one line."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED", "CLIError", "UsageError"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """An error reported as one line on stderr (exit status 1)."""


class UsageError(CLIError):
    """Arguments that do not fit together (exit status 2, like argparse's own errors)."""
