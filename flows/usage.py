"""A command-line typo is a usage error: an `error:` line, then the usage of the command meant; exit 2."""
from __future__ import annotations

import typer


def is_usage_error(e: BaseException) -> bool:
    """click's usage errors (typer ships its own click): unknown option or command, missing value, bad type."""
    return hasattr(e, "format_message") and getattr(e, "exit_code", 0) == 2


def _context(app: typer.Typer, argv: list[str]):
    """The context of the command `argv` names; click attaches none to a missing option value."""
    root = typer.main.get_command(app)
    ctx = root.make_context("mpops", [], resilient_parsing=True)
    name = next((a for a in argv if not a.startswith("-")), None)
    sub = root.get_command(ctx, name) if name else None
    return sub.make_context(name, [], parent=ctx, resilient_parsing=True) if sub else ctx


def usage_error_text(e: BaseException, app: typer.Typer, argv: list[str]) -> str:
    ctx = getattr(e, "ctx", None) or _context(app, argv)
    return f"error: {e.format_message()}\n{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help."
