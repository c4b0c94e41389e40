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


def test_worker_and_agent_processes_import_only_their_own_modules():
    """A cascade worker or host agent imports its module through the lazy packages: not the controller,
    the fluent layer, Bokeh or the suite server."""
    code = ("import sys, ecflow_lab.cascade.executor.agent, ecflow_lab.cascade.executor.worker; "
            "print(sorted(m for m in ('ecflow_lab.cascade.executor.controller', 'ecflow_lab.cascade.fluent', "
            "'ecflow_lab.cascade.executor.cluster', 'bokeh', 'ecflow_lab.server.engine') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_package_names_resolve_once_and_list_in_dir():
    import ecflow_lab.cascade as cascade
    import ecflow_lab.server as server
    from ecflow_lab.cascade.executor.cluster import LocalCluster
    from ecflow_lab.server.engine import Engine

    assert cascade.LocalCluster is LocalCluster and "LocalCluster" in vars(cascade)  # kept after first use
    assert server.Engine is Engine and {"plan", "from_source", "Trace"} <= set(dir(cascade))
    try:
        cascade.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "ecflow_lab.cascade" in str(exc) and "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
