"""Errors raised while finding, downloading and verifying dataset files."""

from __future__ import annotations

__all__ = ["DatasetNotFoundError", "DownloadError", "ChecksumError"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the places searched and could not be downloaded.

    The message names every folder searched, every mirror tried and how to
    provide the files offline.
    """


class DownloadError(OSError):
    """Every mirror of a file failed (network error, HTTP error, incomplete transfer).

    ``attempts`` holds one ``"URL: reason"`` line per mirror tried, in order.
    """

    def __init__(self, message: str, attempts: list[str]):
        super().__init__(message)
        self.attempts = attempts


class ChecksumError(ValueError):
    """A downloaded file does not match its published checksum; it was discarded.

    ``attempts`` holds one ``"URL: reason"`` line per mirror tried, in order.
    """

    def __init__(self, message: str, attempts: list[str]):
        super().__init__(message)
        self.attempts = attempts
