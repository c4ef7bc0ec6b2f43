"""Errors that mean "the input is wrong", as opposed to a bug. The CLI prints their message as one sentence."""


class UserError(Exception):
    """Bad input or configuration; the message says what and where, and what to do."""


class DataError(UserError):
    """A tomogram, picks file or project layout that cannot be read as given."""
