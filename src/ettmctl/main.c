/* ettmctl: the ETTM admin CLI. Talks to an agent over its control socket.
 * This file owns the command line: the global options, the table of
 * commands with their help, and dispatch; the commands are in cmd-*.c,
 * the request in request.c, the output helpers in output.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ettmctl/ettmctl.h"

#define DEFAULT_SOCKET "/run/ettm/ettmd.sock"

struct command {
	const char *name;
	const char *summary;
	const char *help;
	int (*run)(const struct options *o, int argc, char **argv);
};

static const struct command commands[] = {
    {"status", "show the agent's host, version, uptime and datapath",
     "Usage: ettmctl [--socket PATH] [--json] status\n"
     "\n"
     "Shows the agent's host name and id, version, pid, uptime, and its\n"
     "datapath: state (ok or error, with the reason), the nftables table it\n"
     "owns, the ruleset generation, and the packet and byte counters of\n"
     "guest traffic (guest_tx: guest to network, guest_rx: network to guest,\n"
     "spoofed: dropped because the source was not the guest's address).\n"
     "With [trust], also whether the host is admitted by attestation, its\n"
     "measurement (the PCR value) and why its last attempt was refused.\n",
     cmd_status},
    {"cluster", "show the cluster; remove a host; recover from a lost majority",
     "Usage: ettmctl [--json] cluster\n"
     "       ettmctl [--json] cluster remove HOST\n"
     "       ettmctl [--json] cluster recover\n"
     "       ettmctl [--json] cluster conflicts\n"
     "\n"
     "cluster            this host's state (leader, follower...), the leader, the\n"
     "                   Raft term, commit and applied index, the cluster generation,\n"
     "                   and every member with its role and whether the leader\n"
     "                   reaches it.\n"
     "cluster remove     takes HOST out of the cluster for good (it leaves cleanly).\n"
     "cluster recover    only when a majority of voters is gone for good: declares a\n"
     "                   new membership of the hosts still talking, under a new\n"
     "                   generation. Hosts that come back later rejoin and merge what\n"
     "                   only they had; what cannot merge is listed by\n"
     "cluster conflicts  the orphaned commands that could not be merged.\n",
     cmd_cluster},
    {"store", "dump the replicated tables",
     "Usage: ettmctl [--json] store dump [TABLE]\n"
     "\n"
     "Prints every table of this host's replica (or only TABLE: cluster, members,\n"
     "admissions, trusted, policy, nat_blocks, nat_mappings, leases, conflicts,\n"
     "locations, links, attestations, devices, manager, labels).\n",
     cmd_store},
    {"trust", "list, add or remove trusted measurements",
     "Usage: ettmctl [--json] trust [list]\n"
     "       ettmctl [--json] trust add DIGEST [--note TEXT]\n"
     "       ettmctl [--json] trust add --from-binary PATH --config PATH [--note TEXT]\n"
     "       ettmctl [--json] trust remove DIGEST\n"
     "\n"
     "The measurements (SHA-256, 64 hex digits) of agents the network trusts: the\n"
     "value an agent's PCR holds once it has measured its binary and its\n"
     "configuration (without the keys that only name the host: docs/trust.md).\n"
     "--from-binary and --config compute it from an ettmd binary and a\n"
     "configuration file, here, the way the agent does. A host whose measurement\n"
     "is not trusted is refused; removing a measurement closes the ports of the\n"
     "hosts that run it. Changes are committed to the store; a refusal says why.\n",
     cmd_trust},
    {"hosts", "list hosts; admit a host to the network or revoke it",
     "Usage: ettmctl [--json] hosts [list]\n"
     "       ettmctl [--json] hosts admit HOST\n"
     "       ettmctl [--json] hosts revoke HOST\n"
     "\n"
     "Every member: its state (admitted, refused, revoked, changed, not admitted),\n"
     "guest and control addresses, MAC, where its AEE meets the network (switch\n"
     "datapath id / port), its measurement, when it was last attested, and why it\n"
     "was refused. Only an admitted host's port carries more than control traffic;\n"
     "a changed host (its own quote showed a new measurement that is not trusted)\n"
     "does not replicate the store either until it attests again.\n"
     "\n"
     "Without [trust] in the agents' configuration the admin admits: 'admit' opens\n"
     "the host's port on every switch, 'revoke' closes it. With [trust], hosts are\n"
     "admitted by TPM attestation: 'revoke' closes the port and refuses the host's\n"
     "attempts until 'admit' lets it attest again (with any TPM).\n"
     "Changes are committed to the store.\n",
     cmd_hosts},
    {"switches", "every switch: datapath, agents and roles, flows, ports and rates",
     "Usage: ettmctl [--json] switches\n"
     "\n"
     "For each switch of the configuration: its datapath id, every agent's\n"
     "connection and role (master, slave; asked of every member), the number of\n"
     "flows and groups it holds, and each port with its state and receive and\n"
     "transmit rates (from the statistics polled every stats-interval-ms).\n",
     cmd_switches},
    {"topology", "switches, the links between them, and where each host sits",
     "Usage: ettmctl [--json] topology\n"
     "\n"
     "The switches, the switch-to-switch links learned by LLDP (with their state,\n"
     "rate and utilisation), and each host's switch port, address and admission.\n",
     cmd_topology},
    {"flows", "one switch's flows: desired against installed",
     "Usage: ettmctl [--json] flows SWITCH\n"
     "\n"
     "SWITCH is s1, s2... (configuration order) or a datapath id in hex. Lists\n"
     "the flows ETTM wants on it, computed from the store, against the ETTM\n"
     "flows it holds (as last read): '=' installed as desired, '+' desired but\n"
     "missing, '-' installed but not desired. The master repairs differences.\n",
     cmd_flows},
    {"nat", "public addresses, port blocks and inbound mappings; expose a port",
     "Usage: ettmctl [--json] nat [show]\n"
     "       ettmctl [--json] nat expose HOST PROTO PORT [--public-port P]\n"
     "       ettmctl [--json] nat unexpose PROTO PUBLIC-PORT\n"
     "\n"
     "show      the public addresses with their uplinks and gateways, the port\n"
     "          blocks the store gave each host, this host's translated flows, and\n"
     "          the inbound mappings with owner, guest and lifetime.\n"
     "expose    maps public port P (default: PORT) of PROTO (tcp or udp) on every\n"
     "          public address to PORT of HOST's guest, for good; refused when\n"
     "          the port is mapped already or lies in another host's block.\n"
     "unexpose  removes the mapping of PUBLIC-PORT.\n",
     cmd_nat},
    {"devices", "unmanaged devices: allowed MACs, where they are, who manages them",
     "Usage: ettmctl [--json] devices [list]\n"
     "       ettmctl [--json] devices allow MAC --name NAME\n"
     "       ettmctl [--json] devices remove MAC\n"
     "\n"
     "Unmanaged devices (printers, phones, visitors) run no agent: they are\n"
     "allowed by MAC, and the switches steer all their traffic through the agent\n"
     "the store chose as their manager, which forwards it under its own guest's\n"
     "rules. A device that is not allowed reaches nothing.\n"
     "\n"
     "list    the manager, and each allowed device: MAC, name, the IPv4 address\n"
     "        and switch/port learned from its frames, and the agent managing it.\n"
     "allow   allows MAC (xx:xx:xx:xx:xx:xx, unicast) as NAME (1-31 letters,\n"
     "        digits, '.', '_', '-'); again to rename it.\n"
     "remove  takes the allowance back: the device reaches nothing again.\n",
     cmd_devices},
    {"policy", "check, apply, show or explain the network's policy (the firewall)",
     "Usage: ettmctl [--json] policy check FILE\n"
     "       ettmctl [--json] policy apply [--audit] FILE\n"
     "       ettmctl [--json] policy [show]\n"
     "       ettmctl [--json] policy explain FROM TO SERVICE [--app PATH] [--user USER]\n"
     "                                       [--at \"DAY HH:MM\"]\n"
     "       ettmctl [--json] policy log [--all] [--follow] [--limit N]\n"
     "\n"
     "The network's one policy (docs/policy.md): groups, services, time windows,\n"
     "rules allow and deny judged top to bottom (the first that matches decides),\n"
     "the defaults for outbound and inbound flows, and expect lines that must\n"
     "hold. Every AEE enforces it for its own guest, in both directions; a new\n"
     "epoch, or a window that opens or closes, judges established flows again,\n"
     "so a stricter policy cuts what it denies. Rules may name the program (app)\n"
     "and user at a host's end; that host's agent finds which program in its\n"
     "guest owns each new flow.\n"
     "FILE may be - for standard input.\n"
     "\n"
     "check    parses FILE, runs its expect lines and compiles it for every host;\n"
     "         applies nothing. Exit status 1 when an expectation fails.\n"
     "apply    the same checks, then commits FILE as the next epoch; a file with\n"
     "         an error or a failed expectation changes nothing. Every AEE installs\n"
     "         it beside the active epoch and acknowledges it; the leader then\n"
     "         activates it everywhere at once (without a member that has not\n"
     "         acknowledged within 2 s, which is named). apply waits for that (at\n"
     "         most 10 s). --audit applies it in audit mode: nothing is denied,\n"
     "         and what would be is logged.\n"
     "show     the policy, the active and any pending epoch, the epoch this host\n"
     "         enforces, and the members that have not acknowledged the newest.\n"
     "explain  which rule decides a flow at each end that judges it, e.g.\n"
     "           ettmctl policy explain h2 h1 tcp/22\n"
     "         FROM and TO are hosts, addresses or internet; SERVICE is tcp/PORT,\n"
     "         udp/PORT or icmp; --app and --user name the program and user\n"
     "         that open the flow at FROM (not named: none an app or user rule\n"
     "         names); --at when it begins, in the policy's time zone (default:\n"
     "         now), e.g. --at \"sat 14:00\".\n"
     "log      this host's recent denied and logged flows (its AEE's): time, host,\n"
     "         epoch, what was done, the flow, the guest's program and user where\n"
     "         known, and the rule. --all gathers every member's, merged by time (a\n"
     "         member that does not answer is named on standard error). --follow\n"
     "         prints new ones as they come (one JSON object a line with --json);\n"
     "         --limit N the last N only.\n",
     cmd_policy},
    {"services", "the agent's services: which run here, which are off and why",
     "Usage: ettmctl [--json] services\n"
     "\n"
     "Every service of the agent (store, trust, switch, devices, nat, labels...),\n"
     "in the order they start: on, with its status where it reports one, or off,\n"
     "with the reason (what the configuration lacks). A service that is off\n"
     "answers each of its commands with that reason.\n",
     cmd_services},
    {"call", "ask any command of any service, with KEY=VALUE arguments",
     "Usage: ettmctl [--json] call COMMAND [KEY=VALUE | KEY:=JSON]...\n"
     "\n"
     "Sends COMMAND (as docs/control-protocol.md names it: labels, labels.set,\n"
     "nat.expose...) with the arguments given, KEY=VALUE for a string and\n"
     "KEY:=JSON for any other JSON value, and prints the agent's answer as JSON.\n"
     "For the services that have no command of their own in ettmctl, e.g.\n"
     "  ettmctl call labels.set name=printer1 text='2nd floor, by the stairs'\n",
     cmd_call},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: ettmctl [--socket PATH] [--json] COMMAND [ARGS...]\n"
	        "       ettmctl COMMAND --help\n"
	        "\n"
	        "The ETTM admin CLI: talks to an ettmd agent over its control socket.\n"
	        "\n"
	        "Options:\n"
	        "  -s, --socket PATH  the agent's control socket (default " DEFAULT_SOCKET ",\n"
	        "                     or $ETTM_SOCKET when set)\n"
	        "  -j, --json         print machine-readable JSON\n"
	        "  -h, --help         show this help\n"
	        "  -V, --version      show the version\n"
	        "\n"
	        "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nExit status: 0 on success, 1 when the agent cannot be reached or\n"
	             "refuses the request, 2 for bad arguments.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	struct options o = {.socket = getenv("ETTM_SOCKET")};
	if (!o.socket || !*o.socket)
		o.socket = DEFAULT_SOCKET;

	int c;
	/* '+': stop at the command, so its own options are its own. */
	while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ettmctl %s\n", ETTM_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'ettmctl --help'.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}

	const char *name = argv[optind];
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		int sub_argc = argc - optind;
		char **sub_argv = argv + optind;
		for (int k = 1; k < sub_argc; k++) {
			if (strcmp(sub_argv[k], "--help") == 0 || strcmp(sub_argv[k], "-h") == 0) {
				fputs(commands[i].help, stdout);
				return 0;
			}
			if (strcmp(sub_argv[k], "--json") == 0 || strcmp(sub_argv[k], "-j") == 0) {
				o.json = true;
				memmove(&sub_argv[k], &sub_argv[k + 1],
				        (size_t)(sub_argc - k - 1) * sizeof(char *));
				sub_argc--;
				k--;
			}
		}
		return commands[i].run(&o, sub_argc, sub_argv);
	}
	fprintf(stderr, "ettmctl: unknown command \"%s\"\nTry 'ettmctl --help'.\n", name);
	return 2;
}
