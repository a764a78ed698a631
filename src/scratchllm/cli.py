"""What every entry point shares: turning a user-causable error into one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
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


def precheck_overrides(config_dir: str, config_name: str, argv: list[str]) -> None:
    """Compose the config once before Hydra runs, so a mistyped override is reported as one line naming the fix
    (exit 2) instead of Hydra's multi-line report or a traceback later (see ``scratchllm.overrides``)."""
    from scratchllm.overrides import OverrideError, check_overrides

    try:
        check_overrides(config_dir, config_name, argv)
    except OverrideError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def tidy_logging() -> None:
    """Once Hydra has configured logging: Lightning's loggers go through Hydra's handlers only (console and the
    run's log file) instead of printing every line twice, and two messages that are not about the run are dropped
    (Lightning's logging-service advert, a deprecation warning inside Lightning's own code)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
