"""The Client API against a real server (in-process threads, real sockets): seed-001 methods, sync, deltas,
handles, checkpoints, log, HTTP child commands and the ecflow-lab CLIs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from _support import wait_for

from ecflow_lab.client import Client
from ecflow_lab.defs import Defs
from ecflow_lab.server.app import SuiteServer


def defs_text() -> str:
    return """
suite s
  edit ECF_JOB_CMD true
  limit l 2
  family f
    task a
      event ev
      meter m 0 100
      label info "start"
    task b
      trigger a == complete
  endfamily
endsuite
suite other
  edit ECF_JOB_CMD true
  task x
endsuite
"""


@pytest.fixture
def srv(tmp_path):
    for p in ("s/f/a", "s/f/b", "other/x"):
        f = tmp_path / (p + ".ecf")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("echo %ECF_NAME%\n")
    with SuiteServer(tmp_path, checkpoint_mode="NEVER") as server:
        yield server
        server.engine.jobs.wait_all()


@pytest.fixture
def ci(srv):
    c = Client(f"127.0.0.1:{srv.port}")
    c.load(Defs.from_string(defs_text(), "t.def"))
    yield c
    c.close()


def child_for(srv, path):
    t = srv.engine.defs.find_abs_node(path)
    c = Client("127.0.0.1", srv.port)
    c.set_child_path(path)
    c.set_child_password(t.password)
    c.set_child_pid("77")
    c.set_child_try_no(t.try_no)
    return c



def test_errors_are_runtime_errors_with_the_servers_message(ci):
    with pytest.raises(RuntimeError, match="suite nope not found"):
        ci.begin_suite("nope")
    with pytest.raises(RuntimeError, match="already loaded; use force"):
        ci.load(Defs.from_string(defs_text(), "again.def"))
    ci.load(Defs.from_string(defs_text(), "again.def"), force=True)
    bad = _bad_defs_file(ci)
    with pytest.raises(RuntimeError) as err:
        ci.load(bad)
    assert bad in str(err.value) and "/bad/t" in str(err.value)   # file and node of the bad trigger
    assert "bad" not in ci.suites()
    with pytest.raises(RuntimeError, match="node /s/zz not found"):
        ci.suspend("/s/zz")
    assert sorted(ci.suites()) == ["other", "s"]


def _bad_defs_file(ci):
    import tempfile

    f = tempfile.NamedTemporaryFile("w", suffix=".def", delete=False)
    f.write("suite bad\n  task t\n    trigger (((\nendsuite\n")
    f.close()
    return f.name


def test_sync_local_is_incremental(srv, ci):
    ci.sync_local()
    d = ci.get_defs()
    assert d.find_abs_node("/s/f/a").state.name == "unknown"
    ci.begin_suite("s")
    assert wait_for(lambda: srv.engine.defs.find_abs_node("/s/f/a").state.name == "submitted")
    assert ci.news_local()
    ci.sync_local()
    assert ci.in_sync()
    assert "/s/f/a" in ci.changed_node_paths()
    d2 = ci.get_defs()
    assert d2 is d                                      # applied in place, not a fresh copy
    assert d.find_abs_node("/s/f/a").state.name == "submitted"
    cc = child_for(srv, "/s/f/a")
    cc.child_init()
    cc.child_event("ev")
    cc.child_meter("m", 42)
    cc.child_label("info", "half way")
    ci.sync_local()
    a = d.find_abs_node("/s/f/a")
    assert a.state.name == "active" and a.find_event("ev").value and a.find_meter("m").value == 42
    assert a.find_label("info").new_value == "half way"
    cc.child_complete()
    cc.close()
    assert wait_for(lambda: ci.query("state", "/s/f/b") == "submitted")
    ci.sync_local()
    # the incremental copy equals a fresh full download
    fresh = Client("127.0.0.1", srv.port)
    fresh.get_server_defs()
    assert fresh.get_defs().find_abs_node("/s/f/a").state == a.state
    assert d.find_abs_node("/s/f/b").state.name == "submitted"
    fresh.close()


def test_subscribe_gets_snapshot_then_deltas(srv, ci):
    got: list[dict] = []
    lock = threading.Lock()

    def cb(msg):
        with lock:
            got.append(msg)

    with ci.subscribe(cb):
        assert wait_for(lambda: got)
        assert got[0]["full"] is True and got[0]["defs"].find_abs_node("/s/f/a") is not None
        ci.begin_suite("s")
        assert wait_for(lambda: any(c.get("path") == "/s/f/a" and c.get("state") == "submitted"
                                    for m in got[1:] for c in m.get("changes", ())))
    seqs = [m["seq"] for m in got[1:]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(m["v"] == 1 for m in got)
    n = len(got)
    ci.suspend("/s")
    time.sleep(0.3)
    assert len(got) == n                                 # closed: no more callbacks


def test_user_commands(srv, ci):
    ci.begin_suite("s")
    assert wait_for(lambda: ci.query("state", "/s/f/a") == "submitted")
    ci.suspend("/s/f/b")
    assert ci.query("dstate", "/s/f/b") == "suspended"
    assert "suspended" in ci.why("/s/f/b")
    assert "trigger is false" in ci.why("/s/f/b") and "/s/f/a" in ci.why("/s/f/b")
    ci.resume("/s/f/b")
    ci.alter("/s/f/a", "add", "variable", "FOO", "bar")
    assert ci.query("variable", "/s/f/a", "FOO") == "bar"
    ci.alter("/s/f/a", "change", "meter", "m", "7")
    assert ci.query("meter", "/s/f/a", "m") == "7"
    ci.alter("/s/f/b", "change", "trigger", "a:m > 5")
    assert ci.query("trigger", "/s/f/b", "a:m > 5") == "true"
    with pytest.raises(RuntimeError, match="alter"):
        ci.alter("/s/f/b", "change", "trigger", "a ==== (")
    ci.force_event("/s/f/a:ev", "set")
    assert ci.query("event", "/s/f/a", "ev") == "set"
    ci.force_state("/s/f/a", "complete")
    assert ci.query("state", "/s/f/a") == "complete"
    ci.requeue("/s/f", "force")
    assert ci.query("meter", "/s/f/a", "m") == "0"       # requeue resets meters and events
    ci.force_state_recursive("/s", "complete")
    assert ci.query("state", "/s") == "complete"
    assert ci.query("limit_max", "/s", "l") == "2"
    ci.order("/s/f/b", "top")
    ci.sync_local()
    assert [n.name for n in ci.get_defs().find_abs_node("/s/f").children] == ["b", "a"]
    assert "echo %ECF_NAME%" in ci.get_file("/s/f/a", "script")
    assert ci.edit_script_preprocess("/s/f/a").strip() == "echo /s/f/a"
    ci.delete("/other")
    assert ci.suites() == ["s"]


def test_client_handles_filter_suites(srv, ci):
    ci.ch_register(False, ["other"])
    assert ci.ch_handle() > 0
    ci.sync_local()
    d = ci.get_defs()
    assert [s.name for s in d.suites] == ["other"]
    ci.ch_add(["s"])
    ci.get_server_defs()
    assert sorted(s.name for s in ci.get_defs().suites) == ["other", "s"]
    ci.ch_drop()
    assert ci.ch_handle() == 0


def test_checkpoint_files_restore_and_log(srv, ci, tmp_path):
    ci.begin_suite("s")
    ci.checkpt()
    ci.checkpt()
    check = srv.file("ecf.check")
    assert check.exists() and (tmp_path / (check.name + ".b")).exists()
    text = check.read_text()
    assert text.startswith("#") and "defs_state" in text and "suite s" in text and "begun:1" in text
    log = ci.get_log(50)
    assert re.search(r"^MSG:\[\d\d:\d\d:\d\d \d+\.\d+\.\d{4}\] --load ", log, re.M)
    assert re.search(r"^LOG:\[[^]]+\]  submitted: /s/f/a job_size:\d+", log, re.M)
    ci.halt_server()
    ci.delete_all(force=True)
    assert ci.suites() == []
    ci.restore_from_checkpt()
    assert sorted(ci.suites()) == ["other", "s"]
    ci.restart_server()
    ci.checkpt(mode="ALWAYS")
    assert srv.checkpoint_mode == "ALWAYS"
    with pytest.raises(RuntimeError, match="mode must be"):
        ci.checkpt(mode="SOMETIMES")


def test_http_child_commands_and_errors(srv, ci):
    ci.begin_suite("s")
    assert wait_for(lambda: ci.query("state", "/s/f/a") == "submitted")
    t = srv.engine.defs.find_abs_node("/s/f/a")
    base = f"http://127.0.0.1:{srv.http_port}/v1/child/"

    def post(cmd, **fields):
        fields.setdefault("ECF_NAME", "/s/f/a")
        fields.setdefault("ECF_PASS", t.password)
        data = "&".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            with urllib.request.urlopen(base + cmd, data=data, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert post("init", rid="99") == (200, "OK\n")
    assert post("meter", name="m", value="12")[0] == 200
    assert post("event", name="ev")[0] == 200
    code, text = post("meter", name="m", value="5000")
    assert code == 403 and "outside" in text
    code, text = post("complete", ECF_PASS="wrong", ECF_DENIED="1")
    assert code == 403 and "password" in text
    code, _ = post("nonsense")
    assert code == 400
    assert ci.query("meter", "/s/f/a", "m") == "12" and ci.query("state", "/s/f/a") == "active"
    assert post("complete")[0] == 200
    assert ci.query("state", "/s/f/a") == "complete"
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/v1/query?kind=state&path=/s/f/a") as r:
        assert r.read().decode().strip() == "complete"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_jobs_send_child_commands_with_ecf_http_sh(srv, ci):
    """The helper the server puts on its jobs' PATH: child commands in bash alone (/dev/tcp), values
    percent-encoded (spaces, '&', '=', UTF-8), refusals reported with the server's reason, NO_ECF honoured."""
    import os

    ci.begin_suite("s")
    assert wait_for(lambda: ci.query("state", "/s/f/a") == "submitted")
    t = srv.engine.defs.find_abs_node("/s/f/a")
    shim = srv.home / ".ecflow_lab" / "bin"
    assert (shim / "ecf_http.sh").is_file()
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", ECF_HOST="127.0.0.1",
               ECF_HTTP_PORT=str(srv.http_port), ECF_NAME="/s/f/a", ECF_PASS=t.password, ECF_TRYNO="1")

    def job(script: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", ". ecf_http.sh\n" + script], env={**env, **extra},
                              capture_output=True, text=True, timeout=30)

    r = job('ecf_child init rid=$$ && ecf_child meter name=m value=12 && ecf_child event name=ev && '
            'ecf_child label name=info value="a b&c=d % é"')
    assert r.returncode == 0, r.stderr
    assert ci.query("state", "/s/f/a") == "active" and ci.query("meter", "/s/f/a", "m") == "12"
    assert ci.query("event", "/s/f/a", "ev") == "set"
    assert t.labels[0].new_value == "a b&c=d % é"
    r = job("ecf_child meter name=m value=5000")
    assert r.returncode == 1 and "outside" in r.stderr
    r = job("ecf_child complete", ECF_PASS="wrong", ECF_DENIED="1")
    assert r.returncode == 1 and "password" in r.stderr
    r = job("ecf_child complete", NO_ECF="1", ECF_HTTP_PORT="1")  # does nothing at all
    assert r.returncode == 0 and ci.query("state", "/s/f/a") == "active"
    r = job("ecf_child event name=ev value=clear && ecf_child complete")
    assert r.returncode == 0, r.stderr
    assert ci.query("state", "/s/f/a") == "complete" and ci.query("event", "/s/f/a", "ev") == "clear"


def test_cli_user_and_child_commands(srv, ci):
    env_port = str(srv.port)

    def run(*args, env=None, check=True):
        import os

        e = dict(os.environ, ECF_HOST="127.0.0.1", ECF_PORT=env_port)
        e.update(env or {})
        return subprocess.run([sys.executable, "-m", "ecflow_lab", "client", *args], env=e,
                              capture_output=True, text=True, timeout=60, check=check)

    assert "succeeded" in run("--ping").stdout
    run("--begin=s")
    assert wait_for(lambda: ci.query("state", "/s/f/a") == "submitted")
    t = srv.engine.defs.find_abs_node("/s/f/a")
    child_env = {"ECF_NAME": "/s/f/a", "ECF_PASS": t.password, "ECF_TRYNO": "1"}
    run("--init=4242", env=child_env)
    run("--meter=m", "33", env=child_env)
    run("--label=info", "from", "cli", env=child_env)
    assert ci.query("meter", "/s/f/a", "m") == "33"
    out = run("--query", "label", "/s/f/a", "info").stdout.strip()
    assert out == "from cli"
    bad = run("--complete", env=dict(child_env, ECF_PASS="xx", ECF_DENIED="1"), check=False)
    assert bad.returncode == 1 and "password" in bad.stderr
    assert run("--event=ev", env=dict(child_env, NO_ECF="1", ECF_PORT="1")).returncode == 0
    run("--complete", env=child_env)
    assert ci.query("state", "/s/f/a") == "complete"
    assert "suite s" in run("--get").stdout
    stats = run("--stats").stdout
    assert "Child commands" in stats
    assert run("--nonsense", check=False).returncode == 2


def test_server_cli_background_start_status_stop(tmp_path):
    from ecflow_lab.server.app import free_port

    port = str(free_port())
    run = lambda *a: subprocess.run([sys.executable, "-m", "ecflow_lab", "server", *a, "--home", str(tmp_path),  # noqa: E731
                                     "--port", port], capture_output=True, text=True, timeout=60)
    r = run("start", "--background")
    assert r.returncode == 0, r.stderr
    try:
        assert "RUNNING" in run("status").stdout
        info = json.loads((tmp_path / f"ecflow_lab.{port}.json").read_text())
        assert info["port"] == int(port)
    finally:
        assert run("stop").returncode == 0
    info_file = tmp_path / f"ecflow_lab.{port}.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and json.loads(info_file.read_text())["running"]:
        time.sleep(0.1)
    assert json.loads(info_file.read_text())["running"] is False
    assert shutil.which("sh")


def test_download_of_untouched_suite_equals_the_loaded_definition(srv, ci, tmp_path):
    text = """# a comment before
suite odd   # trailing comment
  edit X 'a b'
  family f
    task t ; task u
    task suite_like
      edit NOTE 'suite inside a value'
  endfamily
endsuite
"""
    f = tmp_path / "odd.def"
    f.write_text(text)
    ci.load(str(f))
    ci.get_server_defs()
    got = ci.get_defs().find_abs_node("/odd")
    want = Defs.from_string(text, "odd.def").find_abs_node("/odd")
    assert got == want
    ci.begin_suite("odd")                      # touched: now written from the model
    ci.get_server_defs()
    assert ci.get_defs().find_abs_node("/odd/f/suite_like").find_variable("NOTE").value == "suite inside a value"
    ci.checkpt()
    assert "suite odd" in srv.file("ecf.check").read_text()


def test_gunzip_pieces_cross_members_and_characters(monkeypatch):
    """The client's threaded gunzip: concatenated members, UTF-8 characters cut between pieces, an early
    stop, and data cut short."""
    import gzip

    from ecflow_lab.client import _Gunzip

    text = "".join(f"task t{i} # état {i} ✓\n" for i in range(3000))
    raw = gzip.compress(text[:20000].encode()) + gzip.compress(text[20000:].encode())
    monkeypatch.setattr(_Gunzip, "PIECE", 1001)  # odd sizes: multi-byte characters fall across pieces
    with _Gunzip(raw) as g:
        pieces = list(g)
    assert len(pieces) > 10 and "".join(pieces) == text
    with _Gunzip(raw) as g:  # a reader that stops early leaves no thread behind
        next(iter(g))
    assert not g._thread.is_alive()
    with pytest.raises(EOFError, match="cut short"), _Gunzip(raw[:-30]) as g:
        list(g)


def test_big_definition_download_is_parsed_while_decompressed(srv, ci, monkeypatch):
    import ecflow_lab.client as client_mod

    ci.begin_suite("s")
    got = []
    for limit in (1 << 60, 1):  # the whole text at once, then in pieces while it is decompressed
        monkeypatch.setattr(client_mod, "_STREAM_MIN", limit)
        c = Client(f"127.0.0.1:{srv.port}")
        c.sync_local()
        got.append(c.get_defs())
        c.close()
    assert got[1] == got[0] and got[1].to_string(state=True) == got[0].to_string(state=True)
    assert got[1].find_abs_node("/s/f/a") is not None


def test_dummy_tasks_scriptless_jobs_and_ecf_files_with_variables(srv):
    """ecFlow's ECF_DUMMY_TASK (never submitted), ECF_NO_SCRIPT (ECF_JOB_CMD is the whole job) and an
    ECF_FILES directory written with variables."""
    home = srv.home
    (home / "scripts").mkdir()
    (home / "scripts" / "x.ecf").write_text("echo %TASK% > %ECF_HOME%/ran_%TASK%\n")
    text = f"""
suite v
  edit ECF_HOME '{home}'
  family dummies
    edit ECF_DUMMY_TASK ''
    task d
  endfamily
  task n
    edit ECF_NO_SCRIPT ''
    edit ECF_JOB_CMD 'echo %TASK% > %ECF_HOME%/ran_%TASK%'
  task x
    edit ECF_FILES '%ECF_HOME%/scripts'
    edit ECF_JOB_CMD '/bin/sh %ECF_JOB%'
endsuite
"""
    c = Client(f"127.0.0.1:{srv.port}")
    c.load(Defs.from_string(text, "v.def"))
    c.begin_suite("v")
    assert wait_for(lambda: (home / "ran_n").is_file() and (home / "ran_x").is_file(), 20)
    assert (home / "ran_n").read_text().strip() == "n" and (home / "ran_x").read_text().strip() == "x"
    assert c.query("state", "/v/n") == "submitted" and c.query("state", "/v/x") == "submitted"
    assert c.query("state", "/v/dummies/d") == "queued"
    d = srv.engine.defs.find_abs_node("/v/dummies/d")
    assert d.try_no == 0 and not d.flags  # never tried, no 'no script' flag although it has none
    assert "dummy task" in c.why("/v/dummies/d")
    c.close()


def test_ecf_http_sh_queue_prints_the_step(srv):
    """`ecf_child queue ... action=active` prints the step the server hands out, as ecflow_client does."""
    import os

    home = srv.home
    (home / "q").mkdir()
    (home / "q" / "t.ecf").write_text("echo %TASK%\n")
    c = Client(f"127.0.0.1:{srv.port}")
    c.load(Defs.from_string(f"suite q\n  edit ECF_HOME '{home}'\n  edit ECF_JOB_CMD true\n  task t\n"
                            "    queue work a b c\nendsuite\n", "q.def"))
    c.begin_suite("q")
    assert wait_for(lambda: c.query("state", "/q/t") == "submitted")
    t = srv.engine.defs.find_abs_node("/q/t")
    shim = srv.home / ".ecflow_lab" / "bin"
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", ECF_HOST="127.0.0.1",
               ECF_HTTP_PORT=str(srv.http_port), ECF_NAME="/q/t", ECF_PASS=t.password, ECF_TRYNO="1")
    r = subprocess.run(["bash", "-c", ". ecf_http.sh\necf_child init rid=$$ && ecf_child queue name=work action=active "
                        "&& ecf_child queue name=work action=active"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["a", "b"]
    c.close()
