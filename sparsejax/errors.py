"""Exceptions raised for bad input, before any compilation.

Every message is one line that names the problem (the model, dataset, path, shape, label or
``--set`` value at fault), so that the command line can print it as is.
"""


class SparsejaxError(ValueError):
    """Bad user input: unknown name, bad path, wrong shape/dtype/range, bad config value."""


class UnknownNameError(SparsejaxError):
    """An unknown model, dataset, attack or config-field name."""


class DatasetUnavailableError(SparsejaxError):
    """A known dataset that no source on this machine can serve."""


class CheckpointError(SparsejaxError):
    """A weights file that is missing, unreadable, or does not fit the architecture."""
