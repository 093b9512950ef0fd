"""A typo on the command line is a usage error: an `error:` line, the command's usage line, exit 2."""
from __future__ import annotations

import pytest

from flows.cli import main


@pytest.mark.parametrize("argv, message, usage", [
    (["run", "--bogus-option"], "error: No such option: --bogus-option", "Usage: mpops run [OPTIONS]"),
    (["frobnicate"], "error: No such command 'frobnicate'.", "Usage: mpops [OPTIONS] COMMAND [ARGS]..."),
    (["run", "--data"], "error: Option '--data' requires an argument.", "Usage: mpops run [OPTIONS]"),
    (["noise-floor", "--seeds", "many"], "error: Invalid value for '--seeds': ", "Usage: mpops noise-floor [OPTIONS]"),
], ids=["unknown option", "unknown command", "missing value", "bad type"])
def test_a_typo_prints_an_error_line_then_the_usage_and_exits_2(capsys, argv, message, usage):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(message), lines
    assert lines[1] == usage and lines[2].startswith("Try 'mpops"), lines
    assert not any("internal error" in line or "Traceback" in line for line in lines), lines
