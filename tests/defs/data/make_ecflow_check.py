"""How ecflow_5.9.2.check was made: a real ecflow_server 5.9.2, a small suite, forced states, checkpt.

Run with /usr/bin/python3 (Debian's python3-ecflow); kept for reference, not run by the tests.
"""

import os
import random
import shutil
import socket
import subprocess
import sys
import time

import ecflow


def free_port() -> int:
    while True:
        port = random.randint(20000, 49000)  # ecflow_server refuses the dynamic range
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
        finally:
            s.close()


def main(out: str) -> None:
    home = os.path.abspath("ecf_home")
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    port = free_port()
    env = dict(os.environ, ECF_HOME=home, ECF_PORT=str(port))
    srv = subprocess.Popen(["ecflow_server", "--port", str(port)], cwd=home, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ci = ecflow.Client("localhost", port)
        for _ in range(50):
            try:
                ci.ping()
                break
            except RuntimeError:
                time.sleep(0.1)
        d = ecflow.Defs()
        s = d.add_suite("s")
        s.add_variable("ECF_JOB_CMD", "true")
        s.add_limit("lim", 5)
        f = s.add_family("f")
        f.add_repeat(ecflow.RepeatInteger("I", 1, 5))
        f.add_time("10:00")
        t = f.add_task("t")
        t.add_event("e")
        t.add_meter("m", 0, 100)
        t.add_label("l", "init")
        t.add_inlimit("lim", "/s")
        t.add_trigger("t2 == complete")
        f.add_task("t2")
        f.add_task("q").add_queue(ecflow.Queue("qq", ["a", "b"]))
        ci.load(d)
        ci.restart_server()
        ci.begin_suite("s")
        ci.force_event("/s/f/t:e", "set")
        ci.alter("/s/f/t", "change", "meter", "m", "42")
        ci.alter("/s/f/t", "change", "label", "l", "new val")
        ci.force_state("/s/f/t2", ecflow.State.complete)
        ci.suspend("/s/f/q")
        ci.alter("/s/f", "change", "repeat", "3")
        ci.force_state("/s/f/q", ecflow.State.aborted)
        ci.checkpt()
        time.sleep(0.5)
        check = next(fn for fn in os.listdir(home) if fn.endswith(".check"))
        shutil.copy(os.path.join(home, check), out)
    finally:
        try:
            ecflow.Client("localhost", port).terminate_server()
        except RuntimeError:
            pass
        srv.wait(5)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ecflow_5.9.2.check")
