"""`mpops --help` matches the README: the same commands, and every option's default in its help."""
import re
from pathlib import Path

import typer

from flows.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(group, prefix: str = "") -> dict:
    # typer ships its own click: its classes are not the installed click's, so no isinstance checks
    found = {}
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            found.update(_commands(cmd, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = cmd
    return found


CLI = _commands(typer.main.get_command(app))


def _readme_commands() -> set[str]:
    """The names in the README's command list: the indented `mpops NAME [SUB]` lines under `## Commands`."""
    section = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        m = re.match(r"    mpops ([a-z-]+)(?: ([a-z-]+))?", line)
        if m:
            names.add(f"{m[1]} {m[2]}" if m[2] and f"{m[1]} {m[2]}" in CLI else m[1])
    return names


def test_the_readme_lists_exactly_the_cli_commands():
    assert _readme_commands() == set(CLI)


def _options_without_a_default(cmd) -> list[str]:
    missing = []
    for p in cmd.params:
        if p.param_type_name != "option" or p.required or p.name == "help":
            continue
        shown_by_click = p.show_default is not False and p.default not in (None, False, [], ())
        if not shown_by_click and "default:" not in (p.help or ""):
            missing.append("/".join(p.opts))
    return missing


def test_every_option_shows_its_default():
    missing = {name: m for name, cmd in CLI.items() if (m := _options_without_a_default(cmd))}
    assert missing == {}


def test_help_renders_for_every_command():
    from typer.testing import CliRunner

    runner = CliRunner()
    for name in CLI:
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output
