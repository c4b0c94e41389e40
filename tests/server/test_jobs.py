"""Script pre-processing on ecFlow's own fixtures (conformance/ecflow/preprocess, Apache-2.0)."""

from __future__ import annotations

import os

import pytest

from ecflow_lab.server.jobs import PreprocessError, ScriptNotFound, locate_script, preprocess, substitute


@pytest.fixture
def pp(shared_dir):
    return shared_dir / "conformance" / "ecflow" / "preprocess"


def _vars(pp, **extra):
    base = {
        "ECF_HOME": str(pp / "SMSHOME"), "ECF_INCLUDE": str(pp / "includes"), "SUITE": "suite",
        "FAMILY": "family", "FAMILY1": "family", "TASK": "t1", "DATE": "20200101", "DAY": "wednesday",
        "DD": "01", "DOW": "3", "DOY": "1", "MM": "01", "MONTH": "january", "YYYY": "2020",
        "ECF_DATE": "20200101", "ECF_TIME": "10:00", "ECF_CLOCK": "wednesday:1:1:0", "ECF_TRYNO": "1",
        "ECF_NAME": "/suite/family/t1", "ECF_PASS": "abcdefgh", "ECF_SCRIPT": "x.ecf", "ECF_JOB": "x.job1",
        "ECF_JOBOUT": "x.1", "ECF_JOB_CMD": "%ECF_JOB% > %ECF_JOBOUT%", "ECF_PORT": "3141",
        "ECF_HOST": "localhost", "SLEEPTIME": "7", "ECF_MICRO": "%",
    }
    base.update(extra)
    return base.get


def test_angle_include_manual_comment_nopp_and_ecfmicro(pp):
    out = preprocess(pp / "SMSHOME/suite/family/t1.ecf", _vars(pp))
    job = out.job
    assert "sleep 7" in job                                  # %SLEEPTIME% substituted
    assert "export ECF_NAME=/suite/family/t1" in job        # from <head.h> found in ECF_INCLUDE
    assert "ecflow_client --complete" in job                # %VAR:default% in tail.h
    assert "ignore everything in here" in job               # %nopp body copied verbatim
    for gone in ("%manual", "%comment", "Comment start", "%nopp", "*manual", "%ecfmicro", "OPERATORS"):
        assert gone not in job
    assert "OPERATORS: This is an example" in out.manual
    assert "Test manual files are pre-processed" in out.manual   # *include inside *manual goes to manual
    assert "Rest of the manual page" in out.manual
    assert "#This is the manual from the head.h file" in out.manual
    assert str(pp / "includes" / "head.h") in out.files


def test_quoted_include_looks_in_suite_family_folder(pp):
    out = preprocess(pp / "SMSHOME/suite/family/t3.ecf", _vars(pp))
    assert "#smsinit $$" in out.job                          # SMSHOME/suite/family/head.h, not includes/head.h
    assert "START Rest of the manual" in out.manual and "END of the manual" in out.manual
    assert "&SUITE&" not in out.job


def test_includeonce_includes_a_file_once(pp, tmp_path):
    script = tmp_path / "t.ecf"
    script.write_text("%include <AA.h>\n%include <BB.h>\n%includeonce <CC.h>\nend\n")
    job = preprocess(script, _vars(pp)).job
    assert job.count("#CC") == 1 and job.count("#startBB") == 2


def test_includenopp_keeps_micro_characters(pp, tmp_path):
    (tmp_path / "raw.h").write_text("date +%Y%m%d\n")
    script = tmp_path / "t.ecf"
    script.write_text("%includenopp <raw.h>\necho %SUITE%\n")
    job = preprocess(script, _vars(pp, ECF_INCLUDE=str(tmp_path))).job
    assert job == "date +%Y%m%d\necho suite\n"


def test_variables_defaults_and_literal_percent(pp):
    look = _vars(pp, A="%B%x", B="b")
    assert substitute("%A% %%d %UNSET:dflt% %UNSET:%", look) == "bx %d dflt "


def test_undefined_variable_names_file_and_line(pp, tmp_path):
    script = tmp_path / "t.ecf"
    script.write_text("echo ok\necho %NOT_DEFINED_ANYWHERE%\n")
    with pytest.raises(PreprocessError) as err:
        preprocess(script, _vars(pp))
    assert err.value.file == str(script) and err.value.line == 2
    assert "NOT_DEFINED_ANYWHERE" in str(err.value)


def test_missing_include_and_unclosed_block(pp, tmp_path):
    s1 = tmp_path / "a.ecf"
    s1.write_text("%include <nope.h>\n")
    with pytest.raises(PreprocessError, match="nope.h> not found"):
        preprocess(s1, _vars(pp))
    s2 = tmp_path / "b.ecf"
    s2.write_text("%manual\nhello\n")
    with pytest.raises(PreprocessError, match="not closed"):
        preprocess(s2, _vars(pp))


def test_recursive_include_is_stopped(tmp_path, pp):
    (tmp_path / "loop.h").write_text("%include <loop.h>\n")
    s = tmp_path / "t.ecf"
    s.write_text("%include <loop.h>\n")
    with pytest.raises(PreprocessError, match="more than 100"):
        preprocess(s, _vars(pp, ECF_INCLUDE=str(tmp_path)))


def test_locate_script_order(tmp_path):
    files = tmp_path / "files"
    (files / "fc").mkdir(parents=True)
    (files / "fc" / "model.ecf").write_text("x")
    v = {"ECF_HOME": str(tmp_path / "home"), "ECF_FILES": str(files)}
    assert locate_script("/o/12/fc/model", v.get) == files / "fc" / "model.ecf"
    v["ECF_SCRIPT"] = str(tmp_path / "explicit.ecf")
    (tmp_path / "explicit.ecf").write_text("y")
    assert locate_script("/o/12/fc/model", v.get) == tmp_path / "explicit.ecf"
    with pytest.raises(ScriptNotFound, match="no script found"):
        locate_script("/o/other", {"ECF_HOME": str(tmp_path)}.get)
    assert os.path.isdir(files)


@pytest.mark.parametrize("include", ["%ECF_HOME%/../includes", "$ECF_HOME/../includes", "${ECF_HOME}/../includes",
                                     "/nowhere:%NOPE%/x:%ECF_HOME%/../includes"])
def test_ecf_include_paths_have_their_variables_replaced(pp, include):
    """As ecFlow: each ECF_INCLUDE directory may use ecFlow variables ($VAR, ${VAR} or %VAR%); an unknown one
    just leaves a directory that does not exist."""
    out = preprocess(pp / "SMSHOME/suite/family/t1.ecf", _vars(pp, ECF_INCLUDE=include))
    assert "export ECF_NAME=/suite/family/t1" in out.job   # head.h found through the substituted path
    assert any(f.endswith("includes/head.h") for f in out.files)
