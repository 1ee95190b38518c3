/* ettmctl's commands about the services: nat (public addresses, blocks,
 * inbound mappings) and devices (unmanaged devices). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ettmctl/ettmctl.h"

static void print_nat(json_t *r)
{
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(r, "uplinks"), i, x)
	{
		const char *mac = output_str(x, "gateway_mac");
		printf("uplink %lld: %s via gateway %s (%s), switch %s port %lld, %s\n",
		       (long long)output_num(x, "uplink"), output_str(x, "public"),
		       output_str(x, "gateway"), strcmp(mac, "-") != 0 ? mac : "not resolved here",
		       output_str(x, "dpid"), (long long)output_num(x, "port"),
		       json_is_true(json_object_get(x, "up")) ? "up" : "down");
	}
	json_t *self = json_object_get(r, "self");
	json_int_t use = output_num(self, "in_use");
	printf("%s leaves by %s with %lld block(s)", output_str(self, "host"),
	       output_str(self, "public"), (long long)output_num(self, "blocks"));
	if (use >= 0)
		printf(", %lld translated flow(s)", (long long)use);
	printf("\n\nblocks of %lld ports:\n", (long long)output_num(r, "block_size"));
	json_array_foreach(json_object_get(r, "blocks"), i, x)
	{
		const char *owner = output_str(x, "owner");
		printf("  %5lld-%-5lld  %s\n", (long long)output_num(x, "start"),
		       (long long)output_num(x, "end"),
		       strcmp(owner, "-") != 0 ? owner : "(departed)");
	}
	if (json_array_size(json_object_get(r, "mappings")) == 0)
		return;
	printf("\nmappings:\n");
	json_array_foreach(json_object_get(r, "mappings"), i, x)
	{
		printf("  %s %5lld -> %s %s:%lld", output_str(x, "proto"),
		       (long long)output_num(x, "public_port"), output_str(x, "owner"),
		       output_str(x, "guest"), (long long)output_num(x, "guest_port"));
		if (output_num(x, "expires_ms")) {
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			long long left = (long long)output_num(x, "expires_ms") -
			                 (long long)now.tv_sec * 1000 - now.tv_nsec / 1000000;
			printf("  (lapses in %lld s)", left > 0 ? (left + 999) / 1000 : 0);
		}
		printf("\n");
	}
}

static bool parse_port_arg(const char *s, json_int_t *ret)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!isdigit((unsigned char)s[0]) || *end || errno || v < 1 || v > 65535)
		return false;
	*ret = v;
	return true;
}

int cmd_nat(const struct options *o, int argc, char **argv)
{
	json_t *r;
	const char *sub = argc > 1 ? argv[1] : "show";
	if (strcmp(sub, "show") == 0) {
		if (argc > 2)
			return output_usage_error("nat", "nat: unexpected argument \"%s\"",
			                          argv[2]);
		if (request_call(o, "nat", NULL, &r) != 0)
			return 1;
		return output_result(o, r, print_nat);
	}
	json_int_t port, pub;
	json_t *args;
	if (strcmp(sub, "expose") == 0) {
		if (argc != 5 && !(argc == 7 && strcmp(argv[5], "--public-port") == 0))
			return output_usage_error("nat", "nat expose: expected HOST PROTO PORT "
			                                 "[--public-port P]");
		if (!parse_port_arg(argv[4], &port))
			return output_usage_error(
			    "nat", "nat expose: PORT \"%s\": expected 1 to 65535", argv[4]);
		pub = port;
		if (argc == 7 && !parse_port_arg(argv[6], &pub))
			return output_usage_error(
			    "nat", "nat expose: --public-port \"%s\": expected 1 to 65535",
			    argv[6]);
		args = json_pack("{s:s, s:s, s:I, s:I}", "host", argv[2], "proto", argv[3], "port",
		                 port, "public_port", pub);
	} else if (strcmp(sub, "unexpose") == 0) {
		if (argc != 4 || !parse_port_arg(argv[3], &pub))
			return output_usage_error("nat",
			                          "nat unexpose: expected PROTO PUBLIC-PORT");
		args = json_pack("{s:s, s:I}", "proto", argv[2], "public_port", pub);
	} else {
		return output_usage_error("nat", "nat: unknown subcommand \"%s\"", sub);
	}
	if (request_call(o, strcmp(sub, "expose") == 0 ? "nat.expose" : "nat.unexpose", args, &r) !=
	    0)
		return 1;
	if (o->json)
		return output_result(o, r, NULL);
	printf("%s\n", strcmp(sub, "expose") == 0 ? "exposed" : "no longer exposed");
	json_decref(r);
	return 0;
}

static void print_devices(json_t *r)
{
	size_t i;
	json_t *x;
	json_t *m = json_object_get(r, "manager");
	printf("manager  %s\n",
	       json_is_string(json_object_get(m, "host")) ? output_str(m, "host") : "none yet");
	json_t *a = json_object_get(r, "devices");
	if (json_array_size(a) == 0) {
		printf("no devices allowed\n");
		return;
	}
	printf("%-17s  %-16s %-15s %-21s %s\n", "MAC", "NAME", "ADDRESS", "SWITCH/PORT",
	       "MANAGED BY");
	json_array_foreach(a, i, x)
	{
		char where[40] = "-";
		if (json_is_string(json_object_get(x, "dpid")))
			snprintf(where, sizeof(where), "%s/%d", output_str(x, "dpid"),
			         (int)output_num(x, "port"));
		printf("%-17s  %-16s %-15s %-21s %s\n", output_str(x, "mac"), output_str(x, "name"),
		       output_str(x, "address"), where, output_str(x, "managed_by"));
	}
}

int cmd_devices(const struct options *o, int argc, char **argv)
{
	json_t *r;
	const char *sub = argc > 1 ? argv[1] : "list";
	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return output_usage_error(
			    "devices", "devices list: unexpected argument \"%s\"", argv[2]);
		if (request_call(o, "devices", NULL, &r) != 0)
			return 1;
		return output_result(o, r, print_devices);
	}
	json_t *args;
	if (strcmp(sub, "allow") == 0) {
		if (argc != 5 || strcmp(argv[3], "--name") != 0)
			return output_usage_error("devices",
			                          "devices allow: expected MAC --name NAME");
		args = json_pack("{s:s, s:s}", "mac", argv[2], "name", argv[4]);
	} else if (strcmp(sub, "remove") == 0) {
		if (argc != 3)
			return output_usage_error("devices", "devices remove: expected one MAC");
		args = json_pack("{s:s}", "mac", argv[2]);
	} else {
		return output_usage_error("devices", "devices: unknown subcommand \"%s\"", sub);
	}
	if (request_call(o, sub[0] == 'a' ? "devices.allow" : "devices.remove", args, &r) != 0)
		return 1;
	if (o->json)
		return output_result(o, r, NULL);
	printf("%s %s\n", argv[2], sub[0] == 'a' ? "allowed" : "removed");
	json_decref(r);
	return 0;
}
