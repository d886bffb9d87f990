"""User-facing errors.

Anything raised as :class:`ObliviateError` is a problem with the user's input (a file, a row, a field,
a flag, a name). The CLI prints its message on one line and exits with status 2, never a traceback.
"""


class ObliviateError(Exception):
    """An error the user can fix; the message names the input at fault and what would be valid."""


def did_you_mean(name: str, valid) -> str:
    valid = sorted(valid)
    return f"unknown name {name!r}; valid names: {', '.join(valid) if valid else '(none)'}"
