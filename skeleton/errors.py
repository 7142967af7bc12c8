"""Errors that are the user's to fix (a bad file, a bad argument).

They are reported as one line naming the file and what is wrong, with a non-zero exit and no
traceback; every other exception is a bug and keeps its traceback.
"""


class InputError(Exception):
    """Bad user input (file, argument): reported as one line, no traceback."""
