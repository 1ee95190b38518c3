"""Trust in the lab: every host has its own swtpm with an EK certificate from
the lab's CA, and is admitted only by attestation. A host started from
another binary is refused and its guest reaches nothing until the admin
trusts its measurement; removing a trusted measurement closes the ports of
the hosts that run it; a TPM reset makes the host attest again."""

import json
import os
import shutil
import time

import pytest

from conftest import ETTMD, host_key, make_key, peer_call, run_and_expect

RUN_ROOT = "/run/ettm-lab"


@pytest.fixture(autouse=True)
def _needs_swtpm():
    for tool in ("swtpm", "swtpm_setup"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh)")


def hosts(lab, via="h1"):
    return {h["host"]: h for h in lab.ctl_json(via, "hosts")["hosts"]}


def state_of(lab, host, via="h1"):
    return hosts(lab, via).get(host, {}).get("state")


def pings(lab, src, dst):
    return lab.exec(src, "ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def modified_binary(lab, tmp_path):
    """A copy of ettmd with one byte appended: it runs the same, but it is not
    the binary the cluster trusts."""
    path = tmp_path / "ettmd-modified"
    shutil.copy(ETTMD, path)
    with open(path, "ab") as f:
        f.write(b"\0")
    os.chmod(path, 0o755)
    return str(path)


def test_every_host_is_admitted_by_attestation(make_lab):
    lab = make_lab(4)  # the default lab
    hs = hosts(lab)
    for n in (1, 2, 3, 4):
        h = hs[f"h{n}"]
        assert h["state"] == "admitted", h
        assert h["guest_address"] == f"10.77.1.{n}" and h["control_address"] == f"10.77.0.{n}"
        assert h["port"] > 0 and h["mac"]
    # All run the same binary with the same settings: one measurement,
    # the one the cluster's creator seeded.
    measurements = {h["measurement"] for h in hs.values()}
    trusted = lab.ctl_json("h2", "trust")["trusted"]
    assert len(measurements) == 1 and [t["digest"] for t in trusted] == list(measurements)
    assert "created this cluster (h1)" in trusted[0]["note"]
    # The admission records the TPM: EK and AK fingerprints of the quote.
    adm = {a["host"]: a for a in lab.ctl_json("h3", "store", "dump", "admissions")["admissions"]}
    status = lab.ctl_json("h2", "status")["trust"]
    assert adm["h2"]["ak_fp"] == status["ak_fp"] and adm["h2"]["ek_fp"] == status["ek_fp"]
    assert adm["h2"]["measurement"] == status["measurement"]
    # ... and the TLS key the quote bound: the key of the host's state
    # directory, one per host.
    assert adm["h2"]["tls_fp"] == status["tls_fp"] == lab.ctl_json("h2", "status")["tls_fp"]
    assert len({a["tls_fp"] for a in adm.values()}) == 4
    # The computation of `trust add --from-binary` is the agent's.
    conf = os.path.join(RUN_ROOT, lab.prefix, "h2", "ettmd.conf")
    out = lab.ctl("h2", "--json", "trust", "add", "--from-binary", ETTMD, "--config", conf,
                  check=False)
    assert "already trusted" in out.stderr, out
    assert pings(lab, "h1", "10.77.1.3")
    # The leader keeps re-attesting (the lab's interval is 5 s).
    first = hosts(lab)["h3"]["attested_ms"]
    run_and_expect(lambda: hosts(lab)["h3"]["attested_ms"] > first, timeout=12,
                   what="h3 re-attested")


def applied(lab, host):
    return lab.ctl_json(host, "cluster")["applied_index"]


def test_a_modified_binary_is_refused_until_its_digest_is_trusted(make_lab, tmp_path):
    """A host whose binary changed is refused at its next quote, its guest
    reaches nothing, and its key speaks no Raft: it neither reads what the
    store commits after nor votes. Once the admin trusts the binary, it
    attests again (to the leader the others name, since it knows none by
    Raft), is admitted, and catches up."""
    lab = make_lab(3)
    binary = modified_binary(lab, tmp_path)
    lab.lab("stop", "h3")
    lab.lab("start", "h3", "--binary", binary)
    run_and_expect(lambda: state_of(lab, "h3") == "changed", timeout=15, what="h3 refused")
    reason = hosts(lab)["h3"]["reason"]
    assert "not trusted" in reason, reason
    # Its guest reaches no other guest and not the internet.
    assert not pings(lab, "h3", "10.77.1.1")
    assert not pings(lab, "h3", "198.51.100.10")
    assert pings(lab, "h1", "10.77.1.2")
    # Cut off from Raft within a second or two: the leader hears it no more.
    leader = lab.ctl_json("h1", "cluster")["leader"]
    run_and_expect(lambda: not next(m for m in lab.ctl_json(leader, "cluster")["members"]
                                    if m["name"] == "h3")["reachable"],
                   timeout=10, what="h3 unreachable to the leader")
    cut_at = applied(lab, "h3")
    lab.ctl(leader, "trust", "add", "ab" * 32, "--note", "written while h3 is cut off")
    time.sleep(2)
    assert applied(lab, "h3") == cut_at < applied(lab, leader)
    assert "ab" * 32 not in [t["digest"] for t in lab.ctl_json("h3", "trust")["trusted"]]
    # The admin trusts it: the next attempt admits it, and it catches up.
    conf = os.path.join(RUN_ROOT, lab.prefix, "h3", "ettmd.conf")
    lab.ctl("h2", "trust", "add", "--from-binary", binary, "--config", conf, "--note", "test")
    run_and_expect(lambda: state_of(lab, "h3") == "admitted", timeout=15, what="h3 admitted")
    run_and_expect(lambda: applied(lab, "h3") >= applied(lab, leader), timeout=15,
                   what="h3 caught up")
    assert "ab" * 32 in [t["digest"] for t in lab.ctl_json("h3", "trust")["trusted"]]
    run_and_expect(lambda: pings(lab, "h3", "10.77.1.1"), timeout=10, what="h3 reaches h1")


def test_removing_a_trusted_digest_closes_the_ports_of_its_hosts(make_lab):
    lab = make_lab(3)
    digest = hosts(lab)["h2"]["measurement"]
    assert pings(lab, "h2", "10.77.1.3")
    lab.ctl("h1", "trust", "remove", digest)
    run_and_expect(lambda: all(h["state"] == "refused" for h in hosts(lab).values()),
                   timeout=5, what="every host refused")
    assert "no longer trusted" in hosts(lab)["h2"]["reason"] or \
        "not trusted" in hosts(lab)["h2"]["reason"]
    run_and_expect(lambda: not pings(lab, "h2", "10.77.1.3"), timeout=5,
                   what="h2's port closed")
    # A host that is not admitted speaks only the join protocol to the
    # others: it cannot relay an admin's command to the leader.
    leader = lab.ctl_json("h1", "cluster")["leader"]
    other = next(h for h in ("h1", "h2", "h3") if h != leader)
    r = lab.ctl(other, "trust", "add", digest, "--note", "again", check=False)
    assert r.returncode == 1 and "is no admitted host's" in r.stderr, r.stderr
    # On the leader, whose own proposals need no peer, the control plane
    # still works: trusting it again admits them again.
    lab.ctl(leader, "trust", "add", digest, "--note", "again")
    run_and_expect(lambda: all(h["state"] == "admitted" for h in hosts(lab).values()),
                   timeout=10, what="every host admitted again")
    run_and_expect(lambda: pings(lab, "h2", "10.77.1.3"), timeout=10, what="h2 reaches h3")


# Refuses Raft (port 7700) both ways in an AEE, and nothing else.
BLOCK_RAFT = """
table inet ettm_test_block {
    chain in { type filter hook input priority -10; tcp dport 7700 reject with tcp reset; tcp sport 7700 reject with tcp reset; }
    chain out { type filter hook output priority -10; tcp dport 7700 reject with tcp reset; tcp sport 7700 reject with tcp reset; }
}
"""


def test_a_host_cut_off_while_revoked_and_admitted_rejoins(make_lab):
    """h3's Raft is cut (its peer API is not) while the admin revokes it,
    admits it again and the store commits more: once its Raft is back, it
    hears what its replica missed up to its revocation, attests again, is
    admitted, and catches up with the rest."""
    lab = make_lab(3)
    stamp = hosts(lab)["h3"]["attested_ms"]
    path = os.path.join(RUN_ROOT, lab.prefix, "block-raft.nft")
    with open(path, "w") as f:
        f.write(BLOCK_RAFT)
    lab.aee("h3", "nft", "-f", path)
    try:
        lab.ctl("h1", "hosts", "revoke", "h3")
        run_and_expect(lambda: state_of(lab, "h3") == "revoked", timeout=5, what="h3 revoked")
        lab.ctl("h1", "hosts", "admit", "h3")
        run_and_expect(lambda: state_of(lab, "h3") != "revoked", timeout=5,
                       what="h3 may attest again")
        leader = lab.ctl_json("h1", "cluster")["leader"]
        lab.ctl(leader, "trust", "add", "cd" * 32, "--note", "written while h3 is cut off")
    finally:
        lab.aee("h3", "nft", "delete", "table", "inet", "ettm_test_block")
    run_and_expect(lambda: state_of(lab, "h3") == "admitted" and
                   hosts(lab)["h3"]["attested_ms"] > stamp, timeout=20, what="h3 admitted")
    run_and_expect(lambda: "cd" * 32 in [t["digest"] for t in
                                         lab.ctl_json("h3", "trust")["trusted"]],
                   timeout=15, what="h3 caught up")
    run_and_expect(lambda: pings(lab, "h3", "10.77.1.1"), timeout=10, what="h3 reaches h1")


def test_a_tpm_reset_forces_reattestation(make_lab):
    lab = make_lab(3)
    before = lab.ctl_json("h2", "status")["trust"]["reset_count"]
    stamp = hosts(lab)["h2"]["attested_ms"]
    lab.lab("restart-tpm", "h2")
    run_and_expect(lambda: lab.ctl_json("h2", "status")["trust"]["reset_count"] > before,
                   timeout=5, what="h2 sees its TPM reset")
    # Attested again at once, not at the next 5 s round.
    t0 = time.time()
    run_and_expect(lambda: hosts(lab)["h2"]["attested_ms"] > stamp and
                   state_of(lab, "h2") == "admitted", timeout=4, what="h2 attested again")
    assert time.time() - t0 < 4
    counts = {a["host"]: a for a in lab.ctl_json("h1", "store", "dump", "attestations")["attestations"]}
    assert counts["h2"]["reset_count"] > before
    assert pings(lab, "h2", "10.77.1.1")


def test_an_agent_killed_five_times_attests_each_time(make_lab):
    """kill -9 leaves the agent no chance to flush what it loaded in its TPM:
    each start must still find room for its AK and be admitted by a fresh
    quote of the same AK."""
    lab = make_lab(3)
    ak_fp = lab.ctl_json("h2", "status")["trust"]["ak_fp"]
    for i in range(5):
        stamp = hosts(lab)["h2"]["attested_ms"]
        lab.lab("kill", "h2")
        lab.lab("start", "h2")
        run_and_expect(lambda: hosts(lab)["h2"]["attested_ms"] > stamp and
                       state_of(lab, "h2") == "admitted", timeout=20,
                       what=f"h2 attested after kill {i + 1}")
        assert lab.ctl_json("h2", "status")["trust"]["ak_fp"] == ak_fp
    assert pings(lab, "h2", "10.77.1.1")


def test_admin_revoke_sticks_until_admit(make_lab):
    lab = make_lab(3)
    lab.ctl("h1", "hosts", "revoke", "h3")
    run_and_expect(lambda: state_of(lab, "h3") == "revoked", timeout=5, what="h3 revoked")
    run_and_expect(lambda: not pings(lab, "h3", "10.77.1.1"), timeout=5, what="h3 cut off")
    time.sleep(3)  # h3 keeps trying: its attempts are refused
    assert state_of(lab, "h3") == "revoked"
    out = lab.ctl("h2", "hosts", "admit", "h3").stdout
    assert "may attest again" in out, out
    run_and_expect(lambda: state_of(lab, "h3") == "admitted", timeout=10, what="h3 admitted")


def test_forged_join_messages_are_refused(make_lab, tmp_path):
    lab = make_lab(3)
    leader = lab.ctl_json("h2", "cluster")["leader"]
    addr = f"10.77.0.{leader[1:]}"
    # A machine of the control network with a key of its own, which no host
    # was admitted with.
    cert, key, spki = make_key(str(tmp_path))

    def call(cmd, args, to=addr, who=(cert, key)):
        return peer_call(lab, "h3", to, cmd, args, *who)
    # A challenge in h2's name with a certificate that is not one: refused
    # with the reason, and h2's admission is untouched (the sender proved
    # nothing of h2's TPM).
    r = call("trust.challenge", {"host": "h2", "ek_cert": "30820102", "ek_public": "00",
                                 "ak_public": "00", "tls_spki": spki})
    assert not r["ok"] and "EK certificate" in r["error"], r
    assert state_of(lab, "h2") == "admitted"
    # The key a challenge names must be the key of its TLS connection.
    r = call("trust.challenge", {"host": "h2", "ek_cert": "30820102", "ek_public": "00",
                                 "ak_public": "00", "tls_spki": make_key(str(tmp_path), "b")[2]})
    assert not r["ok"] and "is not the key of this TLS connection" in r["error"], r
    r = call("trust.challenge", {"host": "h2", "ek_cert": "30820102", "ek_public": "00",
                                 "ak_public": "00"})
    assert not r["ok"] and 'field "tls_spki"' in r["error"], r
    # An answer to a challenge that was never made.
    r = call("trust.prove", {"host": "h2", "session": "00" * 16, "plain": "00" * 32,
                             "attest": "00", "signature": "00", "measurement": "0" * 64})
    assert not r["ok"] and "no such challenge" in r["error"], r
    # Malformed fields name the field.
    r = call("trust.challenge", {"host": "h2", "ek_cert": "zz", "ek_public": "00",
                                 "ak_public": "00", "tls_spki": spki})
    assert not r["ok"] and 'field "ek_cert"' in r["error"], r
    # A host that is not a member.
    r = call("trust.challenge", {"host": "h9", "ek_cert": "00", "ek_public": "00",
                                 "ak_public": "00", "tls_spki": spki})
    assert not r["ok"] and "no member" in r["error"], r
    # Beyond the join protocol, a key no host was admitted with is not
    # heard: not a proposal, not a quote, not a status.
    for cmd in ("store.propose", "trust.quote", "store.status", "switch.local"):
        r = call(cmd, {"nonce": "ab" * 32}, to="10.77.0.2")
        assert not r["ok"] and "is no admitted host's" in r["error"], (cmd, r)
    # Nor is a connection without a key, or in plaintext.
    out = lab.aee("h3", "python3", "-c", PLAIN_CALL, "10.77.0.2").stdout
    assert out.strip() == "closed", out
    # A quote answered by a host, asked by an admitted host's key, is of its
    # own TPM and over the nonce asked bound to its own key: it cannot be
    # made to look like another host's.
    r = call("trust.quote", {"nonce": "ab" * 32}, to="10.77.0.2", who=host_key(lab, 3))
    assert r["ok"], r
    status = lab.ctl_json("h2", "status")["trust"]
    assert r["result"]["measurement"] == status["measurement"]
    assert all(h["state"] == "admitted" for h in hosts(lab).values())


PLAIN_CALL = """
import json, socket, sys
s = socket.create_connection((sys.argv[1], 7701), timeout=5)
s.sendall(json.dumps({"id": 1, "cmd": "store.status", "args": {}}).encode() + b"\\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
# A TLS alert may come before the close; a JSON reply never does.
print("answered: " + repr(data) if b'"ok"' in data else "closed")
"""
