"""The OpenFlow channels are TLS 1.3 with certificates of the network's CA
(docs/switch.md, "The OpenFlow channel"): a switch answers no controller
that shows no certificate, or one the network's CA did not sign, nor one
that speaks plain OpenFlow; an agent's certificate opens it; and a capture
on the management network while the master reads and writes the switch
holds no OpenFlow message in clear, only TLS records."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import host_key, make_key, run_and_expect, network_ca

SWITCH = "10.77.255.1"

# One attempt at a controller's first step: connect (plain TCP, or TLS with
# CERT and KEY, "-" for none), send OFPT_HELLO, read the answer. Prints
# "hello" when the switch answered with its own HELLO, else "refused: why".
PROBE = r"""
import socket, ssl, struct, sys
addr, mode, cert, key, ca = sys.argv[1:6]
HELLO = struct.pack("!BBHIHHI", 4, 0, 16, 1, 1, 8, 1 << 4)
try:
    s = socket.create_connection((addr, 6653), timeout=3)
    if mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        if cert != "-":
            ctx.load_cert_chain(cert, key)
        s = ctx.wrap_socket(s, server_hostname=addr)
    s.sendall(HELLO)
    data = s.recv(8)
    print("hello" if data[:2] == b"\x04\x00" else "refused: " + (data.hex() or "closed"))
except (OSError, ssl.SSLError) as e:
    print("refused:", e)
"""


@pytest.fixture(autouse=True)
def _needs_tools():
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump is not installed (scripts/install-deps.sh)")


def probe(lab, host, mode, cert="-", key="-"):
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-{host}-aee", sys.executable,
                           "-c", PROBE, SWITCH, mode, cert, key, network_ca(lab)],
                          capture_output=True, text=True, timeout=20).stdout.strip()


def test_a_switch_speaks_only_to_certificates_of_the_network_ca(make_lab, tmp_path):
    lab = make_lab(3, "--devices", "0")
    os.chmod(tmp_path, 0o755)
    # From h2's AEE, which is on the management network: the switch's port
    # is reachable, and only the handshake decides.
    assert probe(lab, "h2", "plain").startswith("refused"), "plain OpenFlow was answered"
    assert probe(lab, "h2", "tls").startswith("refused"), "TLS with no certificate was answered"
    cert, key, _ = make_key(str(tmp_path))
    assert probe(lab, "h2", "tls", cert, key).startswith("refused"), \
        "a self-signed certificate was answered"
    # The same port with h2's own certificate: the switch answers, so the
    # refusals above are the certificates', not the network's.
    h2_cert, h2_key = host_key(lab, 2)
    assert probe(lab, "h2", "tls", h2_cert, h2_key) == "hello"

    # Every agent holds its switch over TLS and one of them is master.
    run_and_expect(lambda: all(a["role"] in ("master", "slave") for a in
                               lab.ctl_json("h1", "switches")["switches"][0]["agents"]) and
                   len(lab.ctl_json("h1", "switches")["switches"][0]["agents"]) == 3,
                   10, 0.2, what="every agent connected to s1")

    # A capture of the switch's management link while the master polls its
    # statistics (every second, flow entries with ETTM's cookies) and puts
    # back a flow deleted behind its back.
    pcap = str(tmp_path / "of.pcap")
    cap = subprocess.Popen(
        ["ip", "netns", "exec", f"{lab.prefix}-mgmt", "timeout", "8", "tcpdump", "-i", "s1",
         "-U", "-s", "0", "-w", pcap, "tcp port 6653"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run_and_expect(lambda: os.path.exists(pcap), timeout=5, what="tcpdump started")
        time.sleep(1)
        d = f"/run/ettm-lab/{lab.prefix}/s1"
        subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-s1", "ovs-ofctl", "-O",
                        "OpenFlow13", "del-flows", f"unix:{d}/br0.mgmt",
                        "cookie=0xe77b000000000001/-1"], check=True, capture_output=True)
    finally:
        err = cap.communicate(timeout=30)[1]
    data = open(pcap, "rb").read()
    assert len(data) > 5000, (len(data), err)
    # No ETTM cookie (flow statistics, flow-mods) and no OpenFlow 1.3 header
    # of a multipart reply or a flow-mod in clear; TLS application data
    # records instead (RFC 8446, 5.1).
    assert bytes.fromhex("e77d0000") not in data
    assert bytes.fromhex("e77b0000") not in data
    assert data.count(b"\x17\x03\x03") >= 10
    # And the start-up flows deleted behind the master's back are back.
    leader = lab.ctl_json("h1", "cluster")["leader"]
    run_and_expect(lambda: (lambda r: r["missing"] == 0)(lab.ctl_json(leader, "flows", "s1")),
                   5, 0.2, what="s1 converged")
