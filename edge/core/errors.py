"""Errors a user can act on. The CLI prints their message and exits with their code."""

from __future__ import annotations


class EmoedgeError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1


class UsageError(EmoedgeError):
    """A bad command line or argument value."""

    exit_code = 2


class ConfigError(EmoedgeError):
    """A configuration file or key that does not validate."""

    exit_code = 3


class DataError(EmoedgeError):
    """Input data that cannot be read: a missing folder, a corrupt file, no samples."""

    exit_code = 4


class ModelError(EmoedgeError):
    """A model artifact or checkpoint that is missing, invalid or does not match its manifest."""

    exit_code = 5


class DeviceError(EmoedgeError):
    """A capture device or library that is missing or fails."""

    exit_code = 6


class BrokerError(EmoedgeError):
    """An MQTT broker that refuses the connection (credentials, certificate, address)."""

    exit_code = 7


class GateError(EmoedgeError):
    """A quality bound that was breached (e.g. int8 accuracy loss at export)."""

    exit_code = 8
