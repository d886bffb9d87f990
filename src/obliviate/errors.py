"""User-facing errors.

Anything raised as :class:`ObliviateError` is a problem with the user's input (a file, a row, a field,
a flag, a name). The CLI prints its message on one line and exits with status 2, never a traceback.
"""


class ObliviateError(Exception):
    """An error the user can fix; the message names the input at fault and what would be valid."""


def did_you_mean(name: str, valid) -> str:
    valid = sorted(valid)
    return f"unknown name {name!r}; valid names: {', '.join(valid) if valid else '(none)'}"


def flag_error(flag: str, value, err: Exception, hint: str = "") -> ObliviateError:
    """``"{flag} {value}: {err}{hint}"``, without repeating ``value`` when the message already starts with it
    (``--retain-eval x: x: file not found`` -> ``--retain-eval x: file not found``)."""
    msg, v = str(err), str(value)
    if msg.startswith(v + ":"):
        msg = msg[len(v) + 1:].lstrip()
    return ObliviateError(f"{flag} {value}: {msg}{hint}")



def check_int(flag: str, value, minimum: int = 1):
    """``value`` when it is an integer (not a bool) >= ``minimum``; otherwise an :class:`ObliviateError`
    ``"{flag} {value}: must be an integer >= {minimum}"``. The one check behind every count-like flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ObliviateError(f"{flag} {value}: must be an integer >= {minimum}")
    return value


def refuse_unused(flags, where: str) -> None:
    """Refuse flags given where they would be silently ignored. ``flags``: ``(flag, value)`` pairs; those whose
    value is not None or False were given. Raises ``"{given flags} only apply/applies {where}"``."""
    given = [flag for flag, value in flags if value is not None and value is not False]
    if given:
        raise ObliviateError(f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} {where}")
