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


class OutputError(StreamdetError):
    pass


class PipeClosed(StreamdetError):
    """Whoever read our standard output went away (`streamdet run --json - | head`).

    Like other Unix tools, streamdet then ends quietly with the SIGPIPE status.
    """

    exit_code = 141


class ConfigError(StreamdetError):
    pass
