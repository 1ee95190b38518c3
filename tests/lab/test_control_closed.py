"""The control plane is closed to everyone but the agents: a guest, an
allowed and a not-allowed unmanaged device and a rogue machine plugged into
a free switch port try every agent's Raft and peer API ports and the
switch's OpenFlow port, and every command of the peer API and of the admin
over TLS with a key of their own; a host's join, watched on the wire, shows
nothing to replay. Everything is refused or has no effect: every host's
store is the same before and after, every host stays admitted, and the
network still works."""

import json
import shutil
import subprocess
import time

import pytest

from conftest import make_key, run_and_expect

AGENTS = ["10.77.0.1", "10.77.0.2", "10.77.0.3"]
SWITCH = "10.77.255.1"
RAFT, PEER, OPENFLOW = 7700, 7701, 6653
# A stranger on a member's own wire: an extra address on h2's uplink.
STRANGER = "10.77.0.251"

# Connects to each (address, port) at once; prints {"A:P": "open" | error}.
PROBE = """
import json, socket, sys, threading
out = {}
def one(a, p):
    s = socket.socket()
    s.settimeout(1.5)
    try:
        s.connect((a, p))
        out[f"{a}:{p}"] = "open"
    except OSError as e:
        out[f"{a}:{p}"] = type(e).__name__
    finally:
        s.close()
ts = [threading.Thread(target=one, args=(a, int(p))) for a, p in
      (x.split(":") for x in sys.argv[1:])]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps(out))
"""

# Sends each request line of stdin on one TLS connection (mutual TLS 1.3
# with the certificate and key given), from an optional source address;
# prints each reply line (or the error) as JSON lines. A "$SESSION" in a
# request is the session of the last reply that had one.
CALLS = """
import json, socket, ssl, sys
to, source, cert, key = sys.argv[1:5]
lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # agents pin keys, not names
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
try:
    s = ctx.wrap_socket(socket.create_connection(
        (to, 7701), timeout=3, source_address=(source, 0) if source != "-" else None))
except (OSError, ssl.SSLError) as e:
    print(json.dumps({"connect": type(e).__name__}))
    sys.exit(0)
f = s.makefile("rwb")
session = None
for l in lines:
    l = l.replace('"$SESSION"', json.dumps(session))
    f.write(l.encode() + b"\\n")
    f.flush()
    try:
        r = f.readline()
    except (OSError, ssl.SSLError) as e:
        print(json.dumps({"error": type(e).__name__}))
        break
    print(r.decode().strip() or json.dumps({"error": "closed"}))
    try:
        session = json.loads(r)["result"]["session"]
    except (ValueError, KeyError, TypeError):
        pass
"""

# Watches, on a switch port, what an agent sends to the peer APIs for the
# seconds given; prints {"bytes": payload bytes seen, "clear": the first
# request line naming trust.challenge or trust.prove, or null}.
SNIFF = """
import json, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.5)
streams, seen = {}, 0
deadline = time.time() + float(sys.argv[2])
print("ready", flush=True)
while time.time() < deadline:
    try:
        f = s.recv(262144)
    except socket.timeout:
        continue
    if len(f) < 54 or f[12:14] != b"\\x08\\x00":
        continue
    ip = f[14:]
    ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
    if ip[9] != 6:
        continue
    tcp = ip[ihl:total]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    data = tcp[(tcp[12] >> 4) * 4:]
    if dport != 7701 or not data:
        continue
    seen += len(data)
    stream = streams.setdefault((ip[12:16], sport), {})
    stream[seq] = data
    buf = b"".join(v for _, v in sorted(stream.items()))
    for line in buf.split(b"\\n"):
        if b'"trust.challenge"' in line or b'"trust.prove"' in line:
            print(json.dumps({"bytes": seen, "clear": line.decode("latin-1")}), flush=True)
            sys.exit(0)
print(json.dumps({"bytes": seen, "clear": None}), flush=True)
"""

# Every command, with arguments that would do harm if they were obeyed.
COMMANDS = [
    ("cluster.remove", {"host": "h3"}),
    ("cluster.recover", {"delegated": True}),
    ("store.reset", {"generation": 99}),
    ("store.leave", {}),
    ("store.propose", {"command": "00" * 32}),
    ("store.barrier", {}),
    ("store.dump", {}),
    ("store.status", {}),
    ("store.join", {"id": 2, "name": "h2", "address": f"{STRANGER}:7700",
                    "peer": f"{STRANGER}:7701", "raft_version": "libraft 0.15.0"}),
    ("cluster", {}),
    ("cluster.conflicts", {}),
    ("trust.add", {"digest": "ab" * 32, "note": "rogue"}),
    ("trust.remove", {"digest": "ab" * 32}),
    ("trust.list", {}),
    ("trust.quote", {"nonce": "ab" * 32}),
    ("hosts.list", {}),
    ("hosts.revoke", {"host": "h3"}),
    ("hosts.admit", {"host": "h3"}),
    ("devices.allow", {"mac": "02:00:00:00:66:66", "name": "rogue"}),
    ("devices.remove", {"mac": "02:00:00:00:66:66"}),
    ("devices", {}),
    ("labels.set", {"name": "h1", "text": "owned"}),
    ("labels.remove", {"name": "h1"}),
    ("labels", {}),
    ("switch.local", {}),
    ("switches", {}),
    ("topology", {}),
    ("flows", {"switch": "s1"}),
    ("status", {}),
    ("services", {}),
    ("nat", {}),
    ("nat.expose", {"host": "h1", "proto": "tcp", "port": 22}),
    ("policy", {}),
    ("policy.check", {"text": "default outbound allow\ndefault inbound allow\n"}),
    ("policy.apply", {"text": "default outbound deny\ndefault inbound deny\n"}),
    ("policy.explain", {"from": "h1", "to": "h2", "service": "tcp/22"}),
    ("policy.log", {}),
]


@pytest.fixture(autouse=True)
def _needs_swtpm():
    for tool in ("swtpm", "swtpm_setup"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh)")


def probe(lab, where, targets, aee=False):
    run = lab.aee if aee else lab.exec
    out = run(where, "python3", "-c", PROBE, *[f"{a}:{p}" for a, p in targets]).stdout
    return json.loads(out)


def calls(lab, where, to, requests, who, source="-", aee=False):
    lines = "\n".join(json.dumps({"id": i, "cmd": c, "args": a})
                      for i, (c, a) in enumerate(requests))
    cmd = ["ip", "netns", "exec", f"{lab.prefix}-{where}-aee" if aee else f"{lab.prefix}-{where}",
           "python3", "-c", CALLS, to, source, who[0], who[1]]
    p = subprocess.run(cmd, input=lines, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


def stable_dump(lab, host):
    """The store as the host has it, without what changes by itself: the
    times of re-attestation and the learnt topology's timestamps."""
    d = lab.ctl_json(host, "store", "dump")
    for row in d.get("attestations", []):
        for k in ("time_ms", "reset_count", "restart_count"):
            row.pop(k, None)
    return d


def hosts(lab):
    return {h["host"]: h["state"] for h in lab.ctl_json("h1", "hosts")["hosts"]}


def pings(lab, src, dst):
    return lab.exec(src, "ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def test_control_plane_closed_to_guests_devices_and_strangers(make_lab, tmp_path):
    lab = make_lab(3, "--devices", "2")
    leader = lab.ctl_json("h1", "cluster")["leader"]
    leader_addr = f"10.77.0.{leader[1:]}"
    other = next(h for h in ("h3", "h2") if h != leader)
    mac = lab.exec("d1", "cat", "/sys/class/net/eth0/address").stdout.strip()
    lab.ctl("h1", "devices", "allow", mac, "--name", "printer")
    run_and_expect(lambda: pings(lab, "d1", "10.77.1.2"), 15, 0.2,
                   what="the allowed device d1 reaches h2's guest")
    lab.lab("rogue", "up")
    lab.aee("h2", "ip", "addr", "add", f"{STRANGER}/16", "dev", "u0")
    # Every stranger has a TLS key of its own, which no host was admitted
    # with.
    *stranger, stranger_spki = make_key(str(tmp_path))

    # A join, watched on the wire when `other` attests again after a TPM
    # reset: its challenge and answer are TLS records, nothing to replay.
    sniff = lab.popen("s1", "python3", "-c", SNIFF, other, "12")
    assert sniff.stdout.readline().strip() == "ready"
    stamp = {h["host"]: h for h in lab.ctl_json("h1", "hosts")["hosts"]}[other]["attested_ms"]
    lab.lab("restart-tpm", other)
    run_and_expect(lambda: {h["host"]: h for h in lab.ctl_json("h1", "hosts")["hosts"]}
                   [other]["attested_ms"] > stamp and hosts(lab)[other] == "admitted", 15, 0.2,
                   what=f"{other} admitted again after its TPM reset")
    watched, _ = sniff.communicate(timeout=30)
    assert sniff.returncode == 0, watched
    watched = json.loads(watched.strip().splitlines()[-1])
    assert watched["bytes"] > 0 and watched["clear"] is None, watched
    # The switch must have learnt where everything is before the snapshot.
    time.sleep(2)
    before = {h: stable_dump(lab, h) for h in ("h1", "h2", "h3")}
    assert all(s == "admitted" for s in hosts(lab).values())

    # Guests and devices reach no control port at all.
    targets = [(a, p) for a in AGENTS for p in (RAFT, PEER)] + [(SWITCH, OPENFLOW)]
    for where in ("h1", "h3", "d1", "d2"):
        got = probe(lab, where, targets)
        assert "open" not in got.values(), f"{where} reached {got}"
    # Nor does the guest reach its own agent's ports.
    assert "open" not in probe(lab, "h2", [("10.77.0.2", RAFT), ("10.77.0.2", PEER)]).values()

    # A stranger that reaches a peer API (the rogue, or a machine on a
    # member's own wire) may only join: every other command is refused.
    sources = [("rogue", "-", False), ("h2", STRANGER, True)]
    for where, source, aee in sources:
        for to in (leader_addr, "10.77.0.1" if leader_addr != "10.77.0.1" else "10.77.0.2"):
            replies = calls(lab, where, to, COMMANDS, stranger, source, aee=aee)
            if replies and "connect" in replies[0]:
                continue  # the wire itself refuses: nothing to answer
            assert len(replies) == len(COMMANDS), replies
            for (cmd, _), r in zip(COMMANDS, replies):
                # A join asked of a follower is sent to the leader: no effect.
                redirect = cmd == "store.join" and r.get("ok") and \
                    list(r["result"]) == ["redirect"]
                assert r.get("ok") is False or redirect, f"{cmd} from {where}/{source} to {to}: {r}"

    # A challenge in an admitted host's name from a stranger's key proves
    # nothing of its TPM: refused, and it revokes nothing; an answer to a
    # challenge that was never made finds no session.
    time.sleep(4)  # the strangers' buckets fill again
    for where, source, aee in sources:
        forged = {"host": other, "ek_cert": "30820102", "ek_public": "00", "ak_public": "00",
                  "tls_spki": stranger_spki}
        replies = calls(lab, where, leader_addr, [("trust.challenge", forged)], stranger,
                        source, aee=aee)
        if "connect" in replies[0]:
            continue
        assert not replies[0]["ok"] and "EK certificate" in replies[0]["error"], replies
        wrong = {"host": other, "session": "00" * 16, "plain": "00" * 32,
                 "attest": "00", "signature": "00", "measurement": "0" * 64}
        r = calls(lab, where, leader_addr, [("trust.prove", wrong)], stranger, source,
                  aee=aee)[0]
        assert not r["ok"] and "no such challenge" in r["error"], r
        assert hosts(lab)[other] == "admitted"
    # A flood of joins from one stranger is cut down to its rate.
    flood = calls(lab, "h2", leader_addr, [("store.hello", {})] * 60, stranger, STRANGER,
                  aee=True)
    refused = [r for r in flood if not r.get("ok")]
    assert refused and all("too many requests" in r["error"] for r in refused), flood

    # Nothing changed: the same store everywhere, every host admitted.
    time.sleep(1)
    assert all(s == "admitted" for s in hosts(lab).values()), hosts(lab)
    for h in ("h1", "h2", "h3"):
        after = stable_dump(lab, h)
        assert after == before[h], f"{h}'s store changed"
    # The refusals were logged, once per source and minute.
    log = lab.log(leader)
    refusals = [line for line in log.splitlines()
                 if "peer API: refused" in line and f"from {STRANGER} " in line]
    assert 1 <= len(refusals) <= 2, refusals
    assert 1 <= log.count(f"peer API: {STRANGER} is over its rate") <= 2

    # And the network works: guests reach each other and the internet,
    # the allowed device its guests.
    assert pings(lab, "h1", "10.77.1.2")
    assert pings(lab, "h3", "198.51.100.10")
    assert pings(lab, "d1", "10.77.1.3")
    lab.lab("rogue", "down")
