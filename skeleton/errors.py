"""Errors that are the user's to fix (a bad file, a bad argument).

They are reported as one line naming the file and what is wrong, with a non-zero exit and no
traceback; every other exception is a bug and keeps its traceback.
"""


class InputError(Exception):
    """Bad user input (file, argument): reported as one line, no traceback."""


def read_input_file(path, what: str = "file") -> bytes:
    """The bytes of a file the user named, or an InputError saying why there are none: missing,
    a folder, or unreadable. ``what`` names what the file should be, for the message."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a {what}")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
