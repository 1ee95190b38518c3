"""Fixtures for the lab tests: labs of namespaces made with ettm-lab, each
with its own prefix, always torn down (even when a test fails)."""

import json
import os
import random
import shutil
import string
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(REPO, "lab", "ettm-lab")
BUILD = os.environ.get("ETTM_BUILD", os.path.join(REPO, "build"))
ETTMD = os.path.join(BUILD, "src", "ettmd", "ettmd")
ETTMCTL = os.path.join(BUILD, "src", "ettmctl", "ettmctl")
RUN_ROOT = "/run/ettm-lab"  # where lab/ettm-lab keeps each lab's files


def run_and_expect(fn, timeout=10.0, interval=0.1, what="condition"):
    """Polls fn() until it returns something true; fails with the last value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - keep polling, report the last
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout} s (last: {last!r})")


class LabHandle:
    def __init__(self, prefix, hosts):
        self.prefix = prefix
        self.hosts = hosts

    def lab(self, *args, check=True, timeout=120):
        p = subprocess.run([LAB] + list(args[:1]) + ["--prefix", self.prefix] + list(args[1:]),
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"ettm-lab {' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        return p

    def exec(self, name, *cmd, check=True, timeout=60):
        return self.lab("exec", name, "--", *cmd, check=check, timeout=timeout)

    def aee(self, host, *cmd, check=True, timeout=60):
        return self.lab("aee", host, "--", *cmd, check=check, timeout=timeout)

    def popen(self, name, *cmd, stdin=None):
        return subprocess.Popen([LAB, "exec", "--prefix", self.prefix, name, "--"] + list(cmd),
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def log(self, host):
        """What the host's agent has logged so far."""
        with open(os.path.join(RUN_ROOT, self.prefix, host, "ettmd.log"), errors="replace") as f:
            return f.read()

    def ctl(self, host, *args, check=True):
        return self.lab("ctl", host, "--", *args, check=check)

    def ctl_json(self, host, *args):
        return json.loads(self.ctl(host, "--json", *args).stdout)

    def counters(self, host):
        return self.ctl_json(host, "status")["datapath"]["counters"]

    def nft_counters(self, host):
        out = self.aee(host, "nft", "-j", "list", "counters", "table", "inet", "ettm").stdout
        return {c["counter"]["name"]: c["counter"]["packets"]
                for c in json.loads(out)["nftables"] if "counter" in c}

    def up(self, *args):
        return self.lab("up", *args, timeout=180 + 3 * self.hosts)

    def down(self):
        return self.lab("down", check=False)


# A call on an agent's peer API (mutual TLS 1.3, docs/trust.md) with the
# key and certificate given, as any machine on the control network that has
# a key could make it. Prints the reply line, or {"closed": reason} when the
# agent closes the connection or the handshake fails.
PEER_CALL = r"""
import json, socket, ssl, sys
addr, cmd, args, cert, key = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # agents pin keys, not names
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
try:
    s = ctx.wrap_socket(socket.create_connection((addr, 7701), timeout=5))
    s.sendall((json.dumps({"id": 1, "cmd": cmd, "args": json.loads(args)}) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    print(buf.decode() if buf else json.dumps({"closed": "no reply"}))
except (OSError, ssl.SSLError) as e:
    print(json.dumps({"closed": str(e)}))
"""


def make_key(directory, name="stranger"):
    """A P-256 key and self-signed certificate no host was admitted with:
    (cert path, key path, SubjectPublicKeyInfo in hex)."""
    key, cert = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", "/CN=" + name, "-days", "1"], check=True, capture_output=True)
    return cert, key, spki_hex(key)


def spki_hex(key):
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return der.hex()


def host_key(lab, n):
    """Host n's own TLS certificate and key, from its state directory."""
    state = os.path.join("/run/ettm-lab", lab.prefix, f"h{n}", "state")
    return os.path.join(state, "tls-cert.pem"), os.path.join(state, "tls-key.pem")


def network_ca(lab):
    """The lab's network CA, which signed the switches' and agents' certificates."""
    return os.path.join(RUN_ROOT, lab.prefix, "network-ca", "ca-cert.pem")


# Connects to a switch's OpenFlow port as a controller would: over TLS with
# the certificate and key named in ETTM_OF_TLS ("CERT:KEY:CA"), the lab's
# default, or over plain TCP when it is not set. Scripts that speak raw
# OpenFlow begin with it.
OF_CONNECT = r"""
import os, socket, ssl
def of_connect(addr, timeout=3):
    s = socket.create_connection((addr, 6653), timeout=timeout)
    tls = os.environ.get("ETTM_OF_TLS")
    if not tls:
        return s
    cert, key, ca = tls.split(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx.wrap_socket(s, server_hostname=addr)
"""


def of_env(lab, n):
    """The environment for an OF_CONNECT script that speaks with host n's
    certificate: an admitted agent's, the one kind of key the switches take."""
    cert, key = host_key(lab, n)
    return dict(os.environ, ETTM_OF_TLS=f"{cert}:{key}:{network_ca(lab)}")


def peer_call(lab, from_host, to_addr, cmd, args, cert, key):
    """A call on to_addr's peer API from from_host's AEE with cert and key."""
    out = lab.aee(from_host, "python3", "-c", PEER_CALL, to_addr, cmd, json.dumps(args),
                  cert, key).stdout
    return json.loads(out)


def _prefix():
    return "t" + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))


@pytest.fixture(scope="session", autouse=True)
def _needs_root_and_build():
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces)")
    for path in (ETTMD, ETTMCTL):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not built (make build)")
    for tool in ("ovs-vswitchd", "iperf3", "nft"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh)")


@pytest.fixture
def make_lab():
    """make_lab(hosts=3, '--switches', '2', ...) brings a lab up; every lab
    made is torn down at the end of the test, whatever happened."""
    made = []

    def make(hosts=3, *args):
        h = LabHandle(_prefix(), hosts)
        made.append(h)
        h.up("--hosts", str(hosts), *args)
        return h
    yield make
    keep = os.environ.get("ETTM_LAB_LOGS")  # a directory: each lab's agent logs are copied there
    for h in made:
        if keep:
            shutil.copytree(os.path.join("/run/ettm-lab", h.prefix), os.path.join(keep, h.prefix),
                            ignore=lambda d, names: [n for n in names if not n.endswith(".log")
                                                     and not os.path.isdir(os.path.join(d, n))],
                            ignore_dangling_symlinks=True, dirs_exist_ok=True)
        h.down()
