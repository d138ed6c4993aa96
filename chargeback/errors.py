"""A small error hierarchy: each error is one clear line for the user and maps to an exit code.

Exit codes (PRODUCT.md §7): 0 success, 2 bad usage or input, 1 any other failure.
"""


class ChargebackError(Exception):
    """A failure the user should read as one line; exit code 1."""

    exit_code = 1


class UsageError(ChargebackError):
    """Bad usage or bad input (a flag, a date, a config value); exit code 2."""

    exit_code = 2


class StoreLockedError(ChargebackError):
    """Another process holds the DuckDB store open for writing."""


class KafkaUnavailableError(ChargebackError):
    """The broker could not be reached or started."""
