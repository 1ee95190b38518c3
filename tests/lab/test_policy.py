"""The policy (docs/policy.md) enforced in the lab with real programs:
east-west flows allowed and denied at the receiving AEE, an outbound rule
at the sending one, a stricter epoch cutting an established flow it denies
while one it allows keeps going, rejected files changing nothing, and the
policy's commands closed to other agents and to guests."""

import json
import os
import tempfile
import time

from conftest import host_key, peer_call, run_and_expect

# A TCP echo server on the given ports of the guest's address: each line
# read is written back.
ECHO_SERVER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(64)
    while True:
        c, _ = s.accept()
        def echo(c=c):
            f = c.makefile("rwb", buffering=0)
            for line in f:
                c.sendall(line)
        threading.Thread(target=echo, daemon=True).start()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
"""

# One connection held open: a line every 0.1 s, and the count of echoes
# received so far printed after each; stops at the first silence of 1 s.
ECHO_CLIENT = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.settimeout(1.0)
n = 0
end = time.time() + float(sys.argv[3])
while time.time() < end:
    s.sendall(b"x\n")
    try:
        if s.recv(64):
            n += 1
    except socket.timeout:
        print("silent", n, flush=True)
        break
    print(n, flush=True)
    time.sleep(0.1)
"""

# One connection attempt: prints "ok" after an echo, or why not.
ECHO_ONCE = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.settimeout(2); s.sendall(b"x\n"); print("ok" if s.recv(64) else "closed")
except OSError as e:
    print("no:", e)
"""

BASE = """\
default outbound allow
default inbound deny
service ssh = tcp/22
service web = tcp/80
"""

OPEN = BASE + """\
allow from h2 to h1 ssh          # h2 may log in to h1
allow from h2, h3 to h1 web
deny from h3 to internet tcp/8080
expect allow h2 h1 tcp/22
expect deny h3 h1 tcp/22
expect allow h3 h1 tcp/80
"""

STRICT = BASE + """\
allow from h2, h3 to h1 web
expect deny h2 h1 tcp/22
expect allow h2 h1 tcp/80
"""


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def reach(lab, host, addr, port):
    return lab.exec(host, "python3", "-c", ECHO_ONCE, addr, str(port), check=False).stdout.strip()


def firewall(lab, host):
    return lab.aee(host, "nft", "list", "chain", "inet", "ettm", "firewall_in").stdout


def test_policy_enforced_east_west_and_outbound(make_lab):
    lab = make_lab(3, "--devices", "0")
    server = lab.popen("h1", "python3", "-c", ECHO_SERVER, "10.77.1.1", "22", "80")
    internet = lab.popen("isp", "python3", "-c", ECHO_SERVER, "198.51.100.10", "8080")
    try:
        run_and_expect(lambda: reach(lab, "h3", "10.77.1.1", 22) == "ok", 10,
                       what="before any policy, every flow passes")
        with tempfile.TemporaryDirectory() as d:
            open_file = write(d, "open.policy", OPEN)
            r = lab.ctl("h1", "policy", "check", open_file)
            assert "expectations: 3 passed, 0 failed" in r.stdout, r.stdout
            r = lab.ctl_json("h3", "policy", "apply", open_file)
            assert r["epoch"] == 1
            run_and_expect(lambda: all(lab.ctl_json(h, "policy")["enforced_epoch"] == 1
                                       for h in ("h1", "h2", "h3")),
                           what="epoch 1 enforced on every host")
            # The receiving AEE judges east-west flows.
            assert reach(lab, "h2", "10.77.1.1", 22) == "ok"
            assert reach(lab, "h3", "10.77.1.1", 22).startswith("no:")
            assert reach(lab, "h3", "10.77.1.1", 80) == "ok"
            # The sending AEE judges what its guest sends to the internet.
            assert reach(lab, "h3", "198.51.100.10", 8080).startswith("no:")
            assert reach(lab, "h2", "198.51.100.10", 8080) == "ok"
            explain = lab.ctl_json("h2", "policy", "explain", "h3", "h1", "tcp/22")
            assert explain["allow"] is False and explain["inbound"]["rule"] is None
            explain = lab.ctl_json("h2", "policy", "explain", "h2", "h1", "tcp/22")
            assert explain["allow"] is True and explain["inbound"]["rule"]["line"] == 5

            # Files with an error, or whose expectations fail, change nothing.
            before = {h: firewall(lab, h) for h in ("h1", "h2", "h3")}
            bad = write(d, "bad.policy", OPEN + "allow from h2 to h7 ssh\n")
            r = lab.ctl("h1", "policy", "apply", bad, check=False)
            assert r.returncode == 1
            assert f"{bad}:11:18: unknown host or group \"h7\"" in r.stderr, r.stderr
            failing = write(d, "failing.policy", OPEN + "expect allow h3 h1 tcp/22\n")
            r = lab.ctl("h2", "policy", "apply", failing, check=False)
            assert r.returncode == 1
            assert "1 expectation failed; nothing was applied" in r.stderr, r.stderr
            assert f"{failing}:11:1: expect allow h3 h1 tcp/22: the flow is denied" in r.stderr
            r = lab.ctl("h2", "policy", "check", failing, check=False)
            assert r.returncode == 1 and "1 failed" in r.stdout
            assert lab.ctl_json("h1", "policy")["epoch"] == 1
            assert {h: firewall(lab, h) for h in ("h1", "h2", "h3")} == before

            # A stricter epoch cuts the established flow it denies; the
            # one it still allows keeps going.
            ssh = lab.popen("h2", "python3", "-u", "-c", ECHO_CLIENT, "10.77.1.1", "22", "6")
            web = lab.popen("h3", "python3", "-u", "-c", ECHO_CLIENT, "10.77.1.1", "80", "6")
            time.sleep(1.5)
            r = lab.ctl_json("h1", "policy", "apply", write(d, "strict.policy", STRICT))
            assert r["epoch"] == 2
            ssh_out, _ = ssh.communicate(timeout=20)
            web_out, _ = web.communicate(timeout=20)
            ssh_lines, web_lines = ssh_out.split(), web_out.split()
            assert "silent" in ssh_lines, ssh_out      # cut
            assert int(ssh_lines[-1]) >= 5, ssh_out    # but it ran before
            assert "silent" not in web_lines, web_out  # never lost an echo
            assert int(web_lines[-1]) >= 40, web_out
            assert reach(lab, "h2", "10.77.1.1", 22).startswith("no:")
            assert reach(lab, "h2", "10.77.1.1", 80) == "ok"

        # The policy's commands are the admin's: another agent's AEE,
        # with its own admitted key, is refused on the peer API.
        reply = peer_call(lab, "h2", "10.77.0.1", "policy.apply",
                          {"text": "default outbound deny\ndefault inbound deny\n"},
                          *host_key(lab, 2))
        assert reply["ok"] is False and "is not accepted from" in reply["error"], reply
        # A guest does not reach the control address at all.
        out = lab.exec("h3", "python3", "-c",
                       "import socket; socket.create_connection(('10.77.0.1', 7701), timeout=3)",
                       check=False)
        assert out.returncode != 0
        assert lab.ctl_json("h3", "policy")["epoch"] == 2
    finally:
        for p in (server, internet):
            p.kill()
            p.wait()
