"""The one exception type that means "the user gave us something wrong".

The CLI prints these as a single line and exits non-zero; anything else is a
bug and keeps its traceback.
"""


class StreamdetError(Exception):
    """A user-facing error: the message names what is wrong and what to do."""

    exit_code = 2


class ModelError(StreamdetError):
    pass


class DeviceError(StreamdetError):
    pass


class SourceError(StreamdetError):
    pass


class SinkError(StreamdetError):
    pass


class ConfigError(StreamdetError):
    pass
