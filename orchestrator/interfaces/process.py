"""How the entry points (starter, worker, webhook) leave the process.

A process that has held a Temporal client can abort while the interpreter tears down: the
client's native threads call into Python after it has started finalizing ("Fatal Python error:
PyGILState_Release … Python runtime state: finalizing", exit −6; temporalio/sdk-python#300).
So an entry point does its own cleanup (FIX sessions stopped, databases disposed), then calls
:func:`exit_now` (through :func:`run_and_exit`), which flushes what is buffered and ends the
process without teardown: the exit code is always the command's own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

BROKEN_PIPE = 141
"""Exit code when standard output's reader has gone (``starter.py … | head``): 128 + SIGPIPE,
as a shell reports a process killed by it."""


def exit_now(code: int) -> NoReturn:
    """Flush the log handlers, standard output and standard error, then ``os._exit(code)``.

    ``atexit`` handlers do not run: whatever must happen before the end is done by the caller.
    A reader of standard output that has gone makes the exit code :data:`BROKEN_PIPE` (unless
    ``code`` already says the command failed), with no traceback.
    """
    logging.shutdown()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or BROKEN_PIPE
    except (OSError, ValueError):  # closed or detached: nothing more can be written
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def run_and_exit(main: Callable[[], int]) -> NoReturn:
    """Run an entry point's ``main`` and leave through :func:`exit_now` with its code.

    What ``main`` lets through ends the same way, with the code Python would give it:
    ``sys.exit(n)`` gives ``n``, Ctrl-C 130, any other exception 1 after its traceback.
    """
    try:
        code = main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except Exception:  # noqa: BLE001 - printed as Python would, then the same exit code
        traceback.print_exc()
        code = 1
    exit_now(code)
