"""Errors a user can act on: each says what was wrong, where, and what to do."""


class FtmatrixError(Exception):
    """An error whose message is meant for the user; shown without a traceback."""


class ConfigError(FtmatrixError):
    """The study configuration is invalid."""


class DataError(FtmatrixError):
    """A data file or data source is unusable (names the file, row and field)."""


class ModelError(FtmatrixError):
    """A model folder or model source is unusable."""


class SourceUnreachable(FtmatrixError):
    """The Hugging Face hub (or another remote source) could not be reached."""
