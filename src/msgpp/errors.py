"""Errors a user can cause. The CLI prints them as one line, with no traceback."""

import contextlib


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
    """A library's exception on one line, at most about `limit` characters, keeping the part that
    matters rather than cutting blindly: torch's refusal of a pickle is reduced to what the
    unpickler refused, a state dict that does not fit to its missing, unexpected and mismatched
    keys (the first few of each, with a count), and any other long message keeps its first and
    its last line (where torch and most libraries put the cause)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # terminal colours
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if unpickler := re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.S):
        lines = [f"the weights-only unpickler refused it: {' '.join(unpickler.group(1).split())}"]
    elif lines[0].startswith("Error(s) in loading state_dict"):
        lines = [f"{lines[0].rstrip(':')}: {'; '.join(_state_dict_problems(lines[1:]))}"]
    joined = " ".join(lines)
    if len(joined) <= limit:
        return joined
    head, tail = lines[0], " ".join(lines[1:])[-(limit // 2) :]
    if not tail:
        return head[:limit] + " ..."
    return f"{head[: limit // 2]} ... {tail}"


def _state_dict_problems(lines: list[str], shown: int = 3) -> list[str]:
    """torch's load_state_dict complaints, a line per kind with the first `shown` keys."""
    import re

    problems, mismatches = [], []
    for line in lines:
        kind, _, keys = line.partition(" in state_dict: ")
        if keys:
            names = re.findall(r'"([^"]+)"', keys)
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            problems.append(f"{kind.lower()}: {', '.join(names[:shown])}{more}")
        elif match := re.match(
            r"size mismatch for (\S+): copying a param with shape (.+?) from checkpoint, "
            r"the shape in current model is (.+?)\.?$",
            line,
        ):
            name, theirs, ours = match.groups()
            mismatches.append(f"{name} {_shape(theirs)} in the file, {_shape(ours)} in the model")
        else:
            problems.append(line)
    if mismatches:
        more = f" and {len(mismatches) - shown} more" if len(mismatches) > shown else ""
        problems.append(f"size mismatch for {'; '.join(mismatches[:shown])}{more}")
    return problems


def _shape(text: str) -> str:
    return text.replace("torch.Size(", "").rstrip(")") if text.startswith("torch.Size(") else text


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


@contextlib.contextmanager
def interrupts_deferred():
    """Hold back Ctrl-C (SIGINT) in this block; a press arrives as KeyboardInterrupt right after it.

    For lazy imports of compiled extensions mid-run: a KeyboardInterrupt raised while an
    extension module initialises can crash the interpreter (seen with soxr: SIGSEGV or abort
    instead of "interrupted", exit 130). Python runs signal handlers in the main thread only, so
    elsewhere (or under a handler that is not Python's default) the block runs as is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pressed = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt
