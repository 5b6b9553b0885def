"""Exceptions with messages meant for the researcher running the pipeline."""


class CloakbenchError(Exception):
    """Base class: the message must say what is wrong and how to fix it."""


class ConfigError(CloakbenchError):
    """The configuration is invalid (names the key)."""


class MissingWeightsError(CloakbenchError):
    """A model weight file is missing or does not match its recorded checksum."""


class DataError(CloakbenchError):
    """An input data file or folder is missing or unusable (names the path)."""
