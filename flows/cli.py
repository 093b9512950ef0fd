"""`mpops`: the command line (docs/design.md lists the commands and exit codes). Each command calls a flow."""
from __future__ import annotations

import sys
import traceback
from typing import Optional

import typer

# Import order is the order of `mpops --help`: training first, then the registered model.
import flows.cli_init  # noqa: F401,I001  registers its commands on app
import flows.cli_train  # noqa: F401  registers its commands on app
import flows.cli_model  # noqa: F401  registers its commands on app
import flows.cli_serving  # noqa: F401  registers its commands on app
from flows.cli_base import app, err
from flows.common import prepare_process
from pipeline.core.errors import MpopsError


def _exit_for(e: BaseException, argv: list[str]) -> int:
    """The exit code of an exception that escaped a command, after printing what the user needs."""
    from flows.usage import is_usage_error, usage_error_text

    if is_usage_error(e):
        err.print(usage_error_text(e, app, argv), markup=False, highlight=False)
        return 2
    from pipeline.tracking.store import is_unreachable, unreachable_error

    e = unreachable_error(e) if not isinstance(e, MpopsError) and is_unreachable(e) else e
    if isinstance(e, MpopsError):
        err.print(f"error: {e}", markup=False, highlight=False)
        if e.detail:
            err.print(e.detail, markup=False, highlight=False)
        return e.exit_code
    frame = traceback.extract_tb(e.__traceback__)[-1]
    err.print(f"internal error: {type(e).__name__}: {e} (at {frame.filename}:{frame.lineno}); "
              "this is a bug, please report it with the traceback below", markup=False, highlight=False)
    traceback.print_exc()
    return 1


def main(argv: Optional[list[str]] = None) -> None:
    from flows.processes import Terminated, exit_at_once

    prepare_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, standalone_mode=False, prog_name="mpops")
    except Terminated as e:
        err.print("error: stopped by SIGTERM: open MLflow runs end KILLED, an unfinished version is deleted",
                  markup=False, highlight=False)
        exit_at_once(e.code)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)))
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001  every escape becomes one line and an exit code
        sys.exit(_exit_for(e, argv))


if __name__ == "__main__":
    main()
