"""Errors a user can cause. The CLI prints them as one line, with no traceback."""


class MsgppError(Exception):
    """A user-facing error: bad input, missing file, wrong name. The message says what and where."""


class AudioError(MsgppError):
    """An audio file could not be read or written."""
