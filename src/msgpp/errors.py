"""Errors a user can cause. The CLI prints them as one line, with no traceback."""


class MsgppError(Exception):
    """A user-facing error: bad input, missing file, wrong name. The message says what and where."""


class AudioError(MsgppError):
    """An audio file could not be read or written."""


class InvalidValue(MsgppError, ValueError):
    """A number or option out of range, or of the wrong type (also a ValueError for callers)."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of a library's exception (its type's name when it says nothing), at most
    `limit` characters: the part that fits in a one-line message."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def error_text(error: BaseException, limit: int = 600) -> str:
    """All of an exception's message on one line (torch puts the useful part after a newline),
    cut to `limit` characters."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def check_number(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    integer: bool = False,
):
    """`value` as a finite int (with `integer`) or float within the bounds, else InvalidValue
    naming `name`. `minimum`/`maximum` are inclusive, `above`/`below` exclusive. Strings, None
    and bools are refused: a number is expected."""
    import math
    import numbers

    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or (integer and not isinstance(value, numbers.Integral))
    ):
        kind = "an integer" if integer else "a number"
        raise InvalidValue(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    value = int(value) if integer else float(value)
    if not math.isfinite(value):
        raise InvalidValue(f"{name} must be a finite number, got {value}")
    bounds = []
    if minimum is not None and value < minimum:
        bounds.append(f"at least {minimum:g}")
    if maximum is not None and value > maximum:
        bounds.append(f"at most {maximum:g}")
    if above is not None and value <= above:
        bounds.append("positive" if above == 0 else f"above {above:g}")
    if below is not None and value >= below:
        bounds.append(f"below {below:g}")
    if bounds:
        raise InvalidValue(f"{name} must be {' and '.join(bounds)}, got {value:g}")
    return value


def set_torch_threads(threads: int | None, name: str = "--threads") -> None:
    """A command's `--threads`: torch's CPU threads (None leaves torch's own choice). Checked here
    too, so a caller that builds the arguments without argparse gets the same one-line error."""
    if threads is not None:
        check_number(name, threads, minimum=1, integer=True)
        import torch

        torch.set_num_threads(int(threads))


def number_type(name: str, **bounds):
    """An argparse `type=` that parses a number and checks it with `check_number`; a bad value
    stops the command with one line naming the option."""
    integer = bounds.get("integer", False)

    import argparse

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if integer else 'a number'}, got {text!r}"
            ) from None
        try:
            return check_number(name, value, **bounds)
        except InvalidValue as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name} ")) from None

    parse.__name__ = "integer" if integer else "number"
    return parse
