"""The ecflow-lab dispatcher."""

import subprocess
import sys

from ecflow_lab import cli


def test_usage_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name}" in out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["no-such-thing"]) == 2
    assert "unknown command 'no-such-thing'" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "ecflow_lab", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __import__("ecflow_lab").__version__
