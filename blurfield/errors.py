"""The project's own exception types, at the bottom of the layers (docs/design.md §10):
any module may raise them without importing the command layer."""

from __future__ import annotations


class UserError(RuntimeError):
    """An error caused by the user's input; the CLI prints its message as one line."""
