"""The top-level package: ecFlow names lazily, submodules without side imports."""

import subprocess
import sys

import ecflow_lab


def test_ecflow_names_come_from_defs_and_client():
    from ecflow_lab.client import Client
    from ecflow_lab.defs import Defs, Task

    assert ecflow_lab.Defs is Defs and ecflow_lab.Task is Task and ecflow_lab.Client is Client


def test_importing_a_submodule_does_not_import_the_model():
    code = "import sys; from ecflow_lab import protocol; print('ecflow_lab.defs' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_is_an_attribute_error():
    try:
        ecflow_lab.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
