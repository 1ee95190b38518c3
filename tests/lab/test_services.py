"""The agent's services as a user meets them: `ettmctl services`, a service
that is off answering its commands with the reason, labels replicated to
every host, and commands asked where their scope does not allow them."""

import json

from conftest import host_key, peer_call, run_and_expect


def test_services_list_and_off_reasons(make_lab):
    lab = make_lab(2, "--devices", "0")
    svcs = {s["name"]: s for s in lab.ctl_json("h1", "services")["services"]}
    assert list(svcs) == ["agent", "store", "control", "trust", "switch", "devices", "nat",
                          "policy", "labels"]
    assert all(s["state"] == "on" for s in svcs.values()), svcs
    assert svcs["store"]["status"]["state"] in ("leader", "follower")
    human = lab.ctl("h1", "services").stdout
    assert "labels" in human and "SERVICE" in human


def test_labels_replicate_and_are_admin_only(make_lab):
    lab = make_lab(3, "--devices", "0")
    r = lab.ctl_json("h1", "call", "labels.set", "name=printer1", "text=2nd floor, by the stairs")
    assert r["applied"] is True
    run_and_expect(lambda: [l["text"] for l in lab.ctl_json("h3", "call", "labels")["labels"]]
                   == ["2nd floor, by the stairs"], what="the label on h3")
#A bad name is refused with the field named, and changes nothing.
    bad = lab.ctl("h2", "call", "labels.set", "name=no spaces", "text=x", check=False)
    assert bad.returncode == 1 and 'field "name"' in bad.stderr
#The peer API does not answer admin commands : neither from another
#agent's AEE nor from a guest.
#Another agent's AEE speaks TLS with its own, admitted key : an admin
#command is not in that member's scope.
    reply = peer_call(lab, "h2", "10.77.0.1", "labels.set", {"name": "evil", "text": "x"},
                      *host_key(lab, 2))
    assert reply["ok"] is False and "is not accepted from" in reply["error"], reply
#The guest does not reach the control address at all.
    out = lab.exec("h2", "python3", "-c", SCRIPT, "10.77.0.1", REQ, check=False).stdout
    if out.strip():
        reply = json.loads(out)
        assert reply["ok"] is False and "is not accepted from" in reply["error"], reply
    assert len(lab.ctl_json("h1", "call", "labels")["labels"]) == 1
    r = lab.ctl_json("h2", "call", "labels.remove", "name=printer1")
    assert r["applied"] is True
    run_and_expect(lambda: lab.ctl_json("h1", "call", "labels")["labels"] == [],
                   what="the label removed everywhere")


SCRIPT = ("import socket,sys; s=socket.create_connection((sys.argv[1],7701),timeout=5); "
          "s.sendall(sys.argv[2].encode()+b'\\n'); print(s.makefile().readline())")
REQ = json.dumps({"id": 1, "cmd": "labels.set", "args": {"name": "evil", "text": "x"}})


def test_a_service_that_is_off_says_why(make_lab):
#On a Linux bridge the lab configures no switch and no NAT : the
#switch controller, the devices and NAT are off, and their commands
#say why instead of "unknown command".
    lab = make_lab(1, "--devices", "0", "--switch", "bridge")
    svcs = {s["name"]: s for s in lab.ctl_json("h1", "services")["services"]}
    assert [n for n, s in svcs.items() if s["state"] == "off"] == ["switch", "devices", "nat"]
    for cmd, why in (("switches", "switch control is off on this host: its configuration "
                                   "has no switch.switches"),
                     ("nat", "NAT is off on this host: its configuration has no "
                              "nat.public-addresses"),
                     ("devices", "unmanaged devices need switches")):
        r = lab.ctl("h1", cmd, check=False)
        assert r.returncode == 1 and why in r.stderr, (cmd, r.stderr)
#The others still answer.
    assert lab.ctl_json("h1", "call", "labels")["labels"] == []
