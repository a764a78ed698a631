"""What every entry point shares: turning a user-causable error into one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from scratchllm.errors import ScratchLLMError


def user_error(exc: BaseException) -> BaseException | None:
    """The user-causable error in ``exc``'s chain (Hydra's instantiate wraps constructor errors), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ScratchLLMError, FileNotFoundError)):
            return exc
        if type(exc).__name__ == "MisconfigurationException":  # Lightning's bad-argument error
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def report_user_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        err = user_error(exc)
        if err is None:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
