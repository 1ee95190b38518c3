/* ettmctl's commands about the network: switches, topology, flows and
 * hosts (admission). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ettmctl/ettmctl.h"

static void print_switches(json_t *r)
{
	size_t i, k;
	json_t *sw, *x;
	char a[32], b[32];
	json_array_foreach(json_object_get(r, "switches"), i, sw)
	{
		printf("s%d  %s  dpid %s  flows %lld  groups %lld\n", (int)output_num(sw, "index"),
		       output_str(sw, "address"), output_str(sw, "dpid"),
		       (long long)output_num(sw, "flows"), (long long)output_num(sw, "groups"));
		printf("  agents:");
		json_array_foreach(json_object_get(sw, "agents"), k, x)
		{
			printf(" %s=%s", output_str(x, "host"),
			       json_is_true(json_object_get(x, "connected")) ? output_str(x, "role")
			                                                     : "disconnected");
		}
		printf("\n");
		json_array_foreach(json_object_get(sw, "ports"), k, x)
		{
			printf("  port %-3d %-8s %-4s rx %-14s tx %-14s\n",
			       (int)output_num(x, "port"), output_str(x, "name"),
			       output_str(x, "state"), output_rate(output_fnum(x, "rx_bps"), a),
			       output_rate(output_fnum(x, "tx_bps"), b));
		}
	}
}

int cmd_switches(const struct options *o, int argc, char **argv)
{
	json_t *r;
	if (argc > 1)
		return output_usage_error("switches", "switches: unexpected argument \"%s\"",
		                          argv[1]);
	if (request_call(o, "switches", NULL, &r) != 0)
		return 1;
	return output_result(o, r, print_switches);
}

static void print_topology(json_t *r)
{
	size_t i;
	json_t *x;
	char a[32];
	printf("switches:\n");
	json_array_foreach(json_object_get(r, "switches"), i, x)
	    printf("  s%d  dpid %s  %s\n", (int)output_num(x, "index"), output_str(x, "dpid"),
	           output_str(x, "address"));
	printf("links:\n");
	json_array_foreach(json_object_get(r, "links"), i, x)
	{
		printf("  %s/%d -> %s/%d  %s", output_str(x, "dpid"), (int)output_num(x, "port"),
		       output_str(x, "peer_dpid"), (int)output_num(x, "peer_port"),
		       output_str(x, "state"));
		if (json_object_get(x, "tx_bps"))
			printf("  %s, %.1f%% used", output_rate(output_fnum(x, "tx_bps"), a),
			       100 * output_fnum(x, "utilisation"));
		printf("\n");
	}
	printf("hosts:\n");
	json_array_foreach(json_object_get(r, "hosts"), i, x)
	    printf("  %-8s at %s/%d  %s  control %s  guest %s  %s\n", output_str(x, "host"),
	           output_str(x, "dpid"), (int)output_num(x, "port"), output_str(x, "mac"),
	           output_str(x, "control"), output_str(x, "guest"),
	           json_is_true(json_object_get(x, "admitted")) ? "admitted" : "not admitted");
}

int cmd_topology(const struct options *o, int argc, char **argv)
{
	json_t *r;
	if (argc > 1)
		return output_usage_error("topology", "topology: unexpected argument \"%s\"",
		                          argv[1]);
	if (request_call(o, "topology", NULL, &r) != 0)
		return 1;
	return output_result(o, r, print_topology);
}

static void print_flows(json_t *r)
{
	size_t i;
	json_t *x;
	printf("s%d (dpid %s): %lld desired, %lld installed, %lld missing, %lld unexpected\n",
	       (int)output_num(r, "index"), output_str(r, "dpid"),
	       (long long)output_num(r, "desired"), (long long)output_num(r, "installed"),
	       (long long)output_num(r, "missing"), (long long)output_num(r, "unexpected"));
	json_array_foreach(json_object_get(r, "flows"), i, x)
	{
		const char *state = output_str(x, "state");
		char mark = strcmp(state, "installed") == 0 ? '='
		            : strcmp(state, "missing") == 0 ? '+'
		                                            : '-';
		printf("%c %s\n", mark, output_str(x, "flow"));
	}
}

int cmd_flows(const struct options *o, int argc, char **argv)
{
	json_t *r;
	if (argc != 2)
		return output_usage_error(
		    "flows", "flows: expected one SWITCH (s1, s2... or a datapath id)");
	if (request_call(o, "flows", json_pack("{s:s}", "switch", argv[1]), &r) != 0)
		return 1;
	return output_result(o, r, print_flows);
}

static void print_hosts(json_t *r)
{
	size_t i;
	json_t *x;
	char when[32];
	printf("%-8s %-12s %-15s %-15s %-17s %-22s %-16s %s\n", "HOST", "STATE", "GUEST", "CONTROL",
	       "MAC", "SWITCH/PORT", "MEASUREMENT", "ATTESTED");
	json_array_foreach(json_object_get(r, "hosts"), i, x)
	{
		char where[40] = "-", meas[17] = "-";
		if (json_is_string(json_object_get(x, "dpid")))
			snprintf(where, sizeof(where), "%s/%d", output_str(x, "dpid"),
			         (int)output_num(x, "port"));
		if (json_is_string(json_object_get(x, "measurement")))
			snprintf(meas, sizeof(meas), "%.13s...", output_str(x, "measurement"));
		const char *g = json_string_value(json_object_get(x, "guest_address"));
		const char *c = json_string_value(json_object_get(x, "control_address"));
		const char *mac = json_string_value(json_object_get(x, "mac"));
		printf("%-8s %-12s %-15s %-15s %-17s %-22s %-16s %s\n", output_str(x, "host"),
		       output_str(x, "state"), g ? g : "-", c ? c : "-", mac ? mac : "-", where,
		       meas, output_ago(output_num(x, "attested_ms"), when));
		if (json_is_string(json_object_get(x, "reason")))
			printf("         reason: %s\n", output_str(x, "reason"));
	}
}

int cmd_hosts(const struct options *o, int argc, char **argv)
{
	json_t *r;
	const char *sub = argc > 1 ? argv[1] : "list";
	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return output_usage_error("hosts", "hosts list: unexpected argument \"%s\"",
			                          argv[2]);
		if (request_call(o, "hosts.list", NULL, &r) != 0)
			return 1;
		return output_result(o, r, print_hosts);
	}
	if (strcmp(sub, "admit") != 0 && strcmp(sub, "revoke") != 0)
		return output_usage_error("hosts", "hosts: unknown subcommand \"%s\"", sub);
	if (argc != 3)
		return output_usage_error("hosts", "hosts %s: expected one HOST", sub);
	if (request_call(o, sub[0] == 'a' ? "hosts.admit" : "hosts.revoke",
	                 json_pack("{s:s}", "host", argv[2]), &r) != 0)
		return 1;
	if (o->json)
		return output_result(o, r, NULL);
	/* With attestation the agent says what it did (e.g. "may attest again"). */
	const char *result = json_string_value(json_object_get(r, "result"));
	printf("%s %s\n", argv[2],
	       result          ? result
	       : sub[0] == 'a' ? "admitted"
	                       : "no longer admitted");
	json_decref(r);
	return 0;
}
