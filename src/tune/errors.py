"""The one error of ``src.tune``: a space file, command line or storage the search cannot use, its message naming the
key and the fix (``python -m src.tune`` prints it on one line and exits 1), and the helpers its messages share."""
import difflib
from typing import Any


class BadSpace(ValueError):
    """A space file, command line or storage the search cannot use; the message names the key and the fix."""


def did_you_mean(word: Any, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_type(value: Any, kind: type, key: str, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BadSpace(f"{where}{key}: {value!r} is a {type(value).__name__}, not a {kind.__name__}")
    return value
