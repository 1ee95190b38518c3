/* ettmctl: the ETTM admin CLI. Talks to an agent over its control socket. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/proto.h"
#include "ettmd/config.h"
#include "store/tables.h"
#include "trust/attest.h"

#define DEFAULT_SOCKET "/run/ettm/ettmd.sock"

struct options {
	const char *socket;
	bool json;
};

struct command {
	const char *name;
	const char *summary;
	const char *help;
	int (*run)(const struct options *o, int argc, char **argv);
};

static void usage(FILE *out);

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;
	fputs("ettmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Sends one request and reads its reply line. Returns 0 with the result, or
 * 1 after printing why on stderr. */
static int call(const struct options *o, const char *cmd, json_t *args, json_t **ret_result)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(o->socket) >= sizeof(sa.sun_path)) {
		json_decref(args);
		return fail("%s: socket path too long", o->socket);
	}
	strcpy(sa.sun_path, o->socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		json_decref(args);
		return fail("cannot reach the agent at %s: %s%s", o->socket, strerror(e),
		            e == ENOENT || e == ECONNREFUSED ? " (is ettmd running?)" : "");
	}

	char *line = ctl_request_encode(1, cmd, args);
	size_t len = line ? strlen(line) : 0, off = 0;
	while (line && off < len) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
	if (off != len || len == 0) {
		close(fd);
		return fail("cannot send the request to %s", o->socket);
	}

	static char buf[CTL_LINE_MAX * 16];
	size_t got = 0;
	char *nl = NULL;
	while (!nl && got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	close(fd);
	if (!nl)
		return fail("the agent at %s closed the connection without a reply", o->socket);

	bool ok;
	char *reason = NULL, *error = NULL;
	json_t *result = NULL;
	if (ctl_reply_parse(buf, (size_t)(nl - buf), &ok, &result, &reason, &error) < 0) {
		fail("%s", error ? error : "out of memory");
		free(error);
		return 1;
	}
	if (!ok) {
		fail("%s", reason);
		free(reason);
		return 1;
	}
	*ret_result = result;
	return 0;
}

static int print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s)
		return fail("out of memory");
	puts(s);
	free(s);
	return 0;
}

static uint64_t counter_value(json_t *counters, const char *name, const char *field)
{
	return (uint64_t)json_integer_value(
	    json_object_get(json_object_get(counters, name), field));
}

static int cmd_status(const struct options *o, int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fail("status: unexpected argument \"%s\"\nTry 'ettmctl status --help'.", argv[1]);
		return 2;
	}
	json_t *r = NULL;
	if (call(o, "status", NULL, &r) != 0)
		return 1;
	if (o->json) {
		print_json(r);
		json_decref(r);
		return 0;
	}

	json_t *dp = json_object_get(r, "datapath");
	json_t *cs = json_object_get(dp, "counters");
	const char *error = json_string_value(json_object_get(dp, "error"));
	printf("host       %s (id %" JSON_INTEGER_FORMAT ")\n",
	       json_string_value(json_object_get(r, "host")),
	       json_integer_value(json_object_get(r, "id")));
	printf("version    %s\n", json_string_value(json_object_get(r, "version")));
	printf("pid        %" JSON_INTEGER_FORMAT "\n",
	       json_integer_value(json_object_get(r, "pid")));
	printf("uptime     %.1f s\n", json_real_value(json_object_get(r, "uptime_s")));
	printf("datapath   %s%s%s\n", json_string_value(json_object_get(dp, "state")),
	       error ? ": " : "", error ? error : "");
	printf("table      %s, generation %" JSON_INTEGER_FORMAT "\n",
	       json_string_value(json_object_get(dp, "table")),
	       json_integer_value(json_object_get(dp, "generation")));
	json_t *t = json_object_get(r, "trust");
	if (t) {
		const char *last = json_string_value(json_object_get(t, "last_error"));
		printf("trust      %s, PCR %" JSON_INTEGER_FORMAT " = %s\n",
		       json_is_true(json_object_get(t, "admitted")) ? "admitted" : "not admitted",
		       json_integer_value(json_object_get(t, "pcr")),
		       json_string_value(json_object_get(t, "measurement")));
		if (last)
			printf("           last refusal: %s\n", last);
	}
	printf("\n%-10s %14s %16s\n", "counter", "packets", "bytes");
	const char *names[] = {"guest_tx", "guest_rx", "spoofed"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		printf("%-10s %14" PRIu64 " %16" PRIu64 "\n", names[i],
		       counter_value(cs, names[i], "packets"),
		       counter_value(cs, names[i], "bytes"));
	json_decref(r);
	return 0;
}

static int print_or_json(const struct options *o, json_t *r, void (*human)(json_t *r))
{
	if (o->json || !human)
		print_json(r);
	else
		human(r);
	json_decref(r);
	return 0;
}

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fputs("ettmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'ettmctl %s --help'.\n", cmd);
	return 2;
}

static const char *str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "-";
}

static json_int_t num(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void print_cluster(json_t *r)
{
	printf("this host  %s (id %" JSON_INTEGER_FORMAT "), %s\n", str(r, "name"), num(r, "id"),
	       str(r, "state"));
	printf("leader     %s\n", str(r, "leader"));
	printf("term       %" JSON_INTEGER_FORMAT "\n", num(r, "term"));
	printf("commit     %" JSON_INTEGER_FORMAT "  applied %" JSON_INTEGER_FORMAT "\n",
	       num(r, "commit_index"), num(r, "applied_index"));
	printf("generation %" JSON_INTEGER_FORMAT "\n", num(r, "generation"));
	printf("library    %s\n", str(r, "raft_version"));
	if (json_string_value(json_object_get(r, "error")))
		printf("error      %s\n", str(r, "error"));
	json_t *fd = json_object_get(r, "failure_detector");
	if (fd)
		printf("failure    %s: %s\n", str(fd, "state"), str(fd, "reason"));
	printf("\n%-6s %-16s %-22s %-8s %s\n", "ID", "NAME", "ADDRESS", "ROLE", "REACHABLE");
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(r, "members"), i, m)
	{
		json_t *reach = json_object_get(m, "reachable");
		printf("%-6" JSON_INTEGER_FORMAT " %-16s %-22s %-8s %s\n", num(m, "id"),
		       str(m, "name"), str(m, "address"), str(m, "role"),
		       json_is_null(reach) || !reach ? "unknown"
		       : json_is_true(reach)         ? "yes"
		                                     : "no");
	}
}

static void print_conflicts(json_t *r)
{
	json_t *list = json_object_get(r, "conflicts");
	if (json_array_size(list) == 0) {
		printf("no conflicts\n");
		return;
	}
	size_t i;
	json_t *c;
	printf("%-5s %-12s %-10s %s\n", "ID", "TABLE", "FROM GEN", "REASON");
	json_array_foreach(list, i, c)
	    printf("%-5" JSON_INTEGER_FORMAT " %-12s %-10" JSON_INTEGER_FORMAT " %s\n",
	           num(c, "id"), str(c, "table"), num(c, "generation"), str(c, "reason"));
}

static int cmd_cluster(const struct options *o, int argc, char **argv)
{
	json_t *r = NULL;
	const char *sub = argc > 1 ? argv[1] : NULL;
	if (!sub) {
		if (call(o, "cluster", NULL, &r) != 0)
			return 1;
		return print_or_json(o, r, print_cluster);
	}
	if (strcmp(sub, "remove") == 0) {
		if (argc != 3)
			return usage_error("cluster", "cluster remove: expected one HOST");
		if (call(o, "cluster.remove", json_pack("{s:s}", "host", argv[2]), &r) != 0)
			return 1;
		if (!o->json)
			printf("%s removed from the cluster\n", argv[2]);
		return o->json ? print_or_json(o, r, NULL) : (json_decref(r), 0);
	}
	if (strcmp(sub, "recover") == 0 || strcmp(sub, "conflicts") == 0) {
		if (argc != 2)
			return usage_error("cluster", "cluster %s: unexpected argument \"%s\"", sub,
			                   argv[2]);
		bool recover = sub[1] == 'e';
		if (call(o, recover ? "cluster.recover" : "cluster.conflicts", NULL, &r) != 0)
			return 1;
		if (recover && !o->json) {
			printf("recovered: generation %" JSON_INTEGER_FORMAT " with",
			       num(r, "generation"));
			size_t i;
			json_t *n;
			json_array_foreach(json_object_get(r, "members"), i, n)
			    printf(" %s", json_string_value(n));
			printf("\n");
			json_decref(r);
			return 0;
		}
		return print_or_json(o, r, recover ? NULL : print_conflicts);
	}
	return usage_error("cluster", "cluster: unknown subcommand \"%s\"", sub);
}

static void print_dump(json_t *r)
{
	/* Tables are JSON by nature; the human form is indented JSON. */
	print_json(r);
}

static int cmd_store(const struct options *o, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "dump") != 0)
		return usage_error("store", "store: expected \"dump\"");
	if (argc > 3)
		return usage_error("store", "store dump: at most one TABLE");
	json_t *r = NULL;
	if (call(o, "store.dump", argc == 3 ? json_pack("{s:s}", "table", argv[2]) : NULL, &r) != 0)
		return 1;
	return print_or_json(o, r, print_dump);
}

static void print_trusted(json_t *r)
{
	size_t i;
	json_t *t;
	json_t *list = json_object_get(r, "trusted");
	if (json_array_size(list) == 0)
		printf("no trusted measurements\n");
	json_array_foreach(list, i, t) printf("%s  %s\n", str(t, "digest"), str(t, "note"));
}

static int cmd_trust(const struct options *o, int argc, char **argv)
{
	json_t *r = NULL;
	const char *sub = argc > 1 ? argv[1] : "list";
	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return usage_error("trust", "trust list: unexpected argument \"%s\"",
			                   argv[2]);
		if (call(o, "trust.list", NULL, &r) != 0)
			return 1;
		return print_or_json(o, r, print_trusted);
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "remove") != 0)
		return usage_error("trust", "trust: unknown subcommand \"%s\"", sub);
	bool add = sub[0] == 'a';
	const char *digest = NULL, *note = NULL, *binary = NULL, *config = NULL;
	for (int i = 2; i < argc; i++) {
		const char **opt = strcmp(argv[i], "--note") == 0          ? &note
		                   : strcmp(argv[i], "--from-binary") == 0 ? &binary
		                   : strcmp(argv[i], "--config") == 0      ? &config
		                                                           : NULL;
		if (opt && add && i + 1 < argc)
			*opt = argv[++i];
		else if (argv[i][0] != '-' && !digest)
			digest = argv[i];
		else
			return usage_error("trust", "trust %s: unexpected argument \"%s\"", sub,
			                   argv[i]);
	}
	char computed[65], auto_note[STORE_NOTE_MAX];
	if (binary || config) {
		if (!binary || !config || digest)
			return usage_error("trust",
			                   "trust add: --from-binary PATH and --config PATH "
			                   "go together, instead of a DIGEST");
		/* The agent's own computation (src/trust/attest.c), so the
		 * digest is the one the agent will present. */
		char *measured = NULL, *error = NULL;
		int status = config_load_measured(config, &measured, &error);
		if (status == 0)
			status = attest_measure(binary, measured, computed, &error);
		free(measured);
		if (status < 0) {
			fprintf(stderr, "ettmctl: trust add: %s\n", error ? error : strerror(-status));
			free(error);
			return 1;
		}
		digest = computed;
		if (!note) {
			snprintf(auto_note, sizeof(auto_note), "%.60s with %.60s", binary, config);
			note = auto_note;
		}
	}
	if (!digest)
		return usage_error("trust", "trust %s: expected a DIGEST", sub);
	if (call(o, add ? "trust.add" : "trust.remove",
	         json_pack("{s:s, s:s}", "digest", digest, "note", note ? note : ""), &r) != 0)
		return 1;
	if (o->json)
		return print_or_json(o, r, NULL);
	printf("%s %s\n", digest, add ? "trusted" : "no longer trusted");
	json_decref(r);
	return 0;
}

static double fnum(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

/* 1234567 -> "1.2 Mbit/s". */
static const char *rate(double bps, char buf[32])
{
	const char *unit[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s"};
	int u = 0;
	while (bps >= 1000 && u < 3) {
		bps /= 1000;
		u++;
	}
	snprintf(buf, 32, "%.1f %s", bps, unit[u]);
	return buf;
}

static void print_switches(json_t *r)
{
	size_t i, k;
	json_t *sw, *x;
	char a[32], b[32];
	json_array_foreach(json_object_get(r, "switches"), i, sw)
	{
		printf("s%d  %s  dpid %s  flows %lld  groups %lld\n", (int)num(sw, "index"),
		       str(sw, "address"), str(sw, "dpid"), (long long)num(sw, "flows"),
		       (long long)num(sw, "groups"));
		printf("  agents:");
		json_array_foreach(json_object_get(sw, "agents"), k, x)
		{
			printf(" %s=%s", str(x, "host"),
			       json_is_true(json_object_get(x, "connected")) ? str(x, "role")
			                                                     : "disconnected");
		}
		printf("\n");
		json_array_foreach(json_object_get(sw, "ports"), k, x)
		{
			printf("  port %-3d %-8s %-4s rx %-14s tx %-14s\n", (int)num(x, "port"),
			       str(x, "name"), str(x, "state"), rate(fnum(x, "rx_bps"), a),
			       rate(fnum(x, "tx_bps"), b));
		}
	}
}

static int cmd_switches(const struct options *o, int argc, char **argv)
{
	json_t *r;
	if (argc > 1)
		return usage_error("switches", "switches: unexpected argument \"%s\"", argv[1]);
	if (call(o, "switches", NULL, &r) != 0)
		return 1;
	return print_or_json(o, r, print_switches);
}

static void print_topology(json_t *r)
{
	size_t i;
	json_t *x;
	char a[32];
	printf("switches:\n");
	json_array_foreach(json_object_get(r, "switches"), i, x)
	    printf("  s%d  dpid %s  %s\n", (int)num(x, "index"), str(x, "dpid"), str(x, "address"));
	printf("links:\n");
	json_array_foreach(json_object_get(r, "links"), i, x)
	{
		printf("  %s/%d -> %s/%d  %s", str(x, "dpid"), (int)num(x, "port"),
		       str(x, "peer_dpid"), (int)num(x, "peer_port"), str(x, "state"));
		if (json_object_get(x, "tx_bps"))
			printf("  %s, %.1f%% used", rate(fnum(x, "tx_bps"), a),
			       100 * fnum(x, "utilisation"));
		printf("\n");
	}
	printf("hosts:\n");
	json_array_foreach(json_object_get(r, "hosts"), i, x) printf(
	    "  %-8s at %s/%d  %s  control %s  guest %s  %s\n", str(x, "host"), str(x, "dpid"),
	    (int)num(x, "port"), str(x, "mac"), str(x, "control"), str(x, "guest"),
	    json_is_true(json_object_get(x, "admitted")) ? "admitted" : "not admitted");
}

static int cmd_topology(const struct options *o, int argc, char **argv)
{
	json_t *r;
	if (argc > 1)
		return usage_error("topology", "topology: unexpected argument \"%s\"", argv[1]);
	if (call(o, "topology", NULL, &r) != 0)
		return 1;
	return print_or_json(o, r, print_topology);
}

static void print_flows(json_t *r)
{
	size_t i;
	json_t *x;
	printf("s%d (dpid %s): %lld desired, %lld installed, %lld missing, %lld unexpected\n",
	       (int)num(r, "index"), str(r, "dpid"), (long long)num(r, "desired"),
	       (long long)num(r, "installed"), (long long)num(r, "missing"),
	       (long long)num(r, "unexpected"));
	json_array_foreach(json_object_get(r, "flows"), i, x)
	{
		const char *state = str(x, "state");
		char mark = strcmp(state, "installed") == 0 ? '='
		            : strcmp(state, "missing") == 0 ? '+'
		                                            : '-';
		printf("%c %s\n", mark, str(x, "flow"));
	}
}

static int cmd_flows(const struct options *o, int argc, char **argv)
{
	json_t *r;
	if (argc != 2)
		return usage_error("flows",
		                   "flows: expected one SWITCH (s1, s2... or a datapath id)");
	if (call(o, "flows", json_pack("{s:s}", "switch", argv[1]), &r) != 0)
		return 1;
	return print_or_json(o, r, print_flows);
}

/* "12 s ago" for a time in ms since the epoch. */
static const char *ago(json_int_t ms, char buf[32])
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	long long d = (long long)now.tv_sec - (long long)(ms / 1000);
	if (ms <= 0)
		snprintf(buf, 32, "never");
	else if (d < 120)
		snprintf(buf, 32, "%lld s ago", d < 0 ? 0 : d);
	else
		snprintf(buf, 32, "%lld min ago", d / 60);
	return buf;
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
			snprintf(where, sizeof(where), "%s/%d", str(x, "dpid"),
			         (int)num(x, "port"));
		if (json_is_string(json_object_get(x, "measurement")))
			snprintf(meas, sizeof(meas), "%.13s...", str(x, "measurement"));
		const char *g = json_string_value(json_object_get(x, "guest_address"));
		const char *c = json_string_value(json_object_get(x, "control_address"));
		const char *mac = json_string_value(json_object_get(x, "mac"));
		printf("%-8s %-12s %-15s %-15s %-17s %-22s %-16s %s\n", str(x, "host"),
		       str(x, "state"), g ? g : "-", c ? c : "-", mac ? mac : "-", where, meas,
		       ago(num(x, "attested_ms"), when));
		if (json_is_string(json_object_get(x, "reason")))
			printf("         reason: %s\n", str(x, "reason"));
	}
}

static int cmd_hosts(const struct options *o, int argc, char **argv)
{
	json_t *r;
	const char *sub = argc > 1 ? argv[1] : "list";
	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return usage_error("hosts", "hosts list: unexpected argument \"%s\"",
			                   argv[2]);
		if (call(o, "hosts.list", NULL, &r) != 0)
			return 1;
		return print_or_json(o, r, print_hosts);
	}
	if (strcmp(sub, "admit") != 0 && strcmp(sub, "revoke") != 0)
		return usage_error("hosts", "hosts: unknown subcommand \"%s\"", sub);
	if (argc != 3)
		return usage_error("hosts", "hosts %s: expected one HOST", sub);
	if (call(o, sub[0] == 'a' ? "hosts.admit" : "hosts.revoke",
	         json_pack("{s:s}", "host", argv[2]), &r) != 0)
		return 1;
	if (o->json)
		return print_or_json(o, r, NULL);
	/* With attestation the agent says what it did (e.g. "may attest again"). */
	const char *result = json_string_value(json_object_get(r, "result"));
	printf("%s %s\n", argv[2],
	       result          ? result
	       : sub[0] == 'a' ? "admitted"
	                       : "no longer admitted");
	json_decref(r);
	return 0;
}

static void print_nat(json_t *r)
{
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(r, "uplinks"), i, x)
	{
		const char *mac = str(x, "gateway_mac");
		printf("uplink %lld: %s via gateway %s (%s), switch %s port %lld, %s\n",
		       (long long)num(x, "uplink"), str(x, "public"), str(x, "gateway"),
		       strcmp(mac, "-") != 0 ? mac : "not resolved here", str(x, "dpid"),
		       (long long)num(x, "port"),
		       json_is_true(json_object_get(x, "up")) ? "up" : "down");
	}
	json_t *self = json_object_get(r, "self");
	json_int_t use = num(self, "in_use");
	printf("%s leaves by %s with %lld block(s)", str(self, "host"), str(self, "public"),
	       (long long)num(self, "blocks"));
	if (use >= 0)
		printf(", %lld translated flow(s)", (long long)use);
	printf("\n\nblocks of %lld ports:\n", (long long)num(r, "block_size"));
	json_array_foreach(json_object_get(r, "blocks"), i, x)
	{
		const char *owner = str(x, "owner");
		printf("  %5lld-%-5lld  %s\n", (long long)num(x, "start"), (long long)num(x, "end"),
		       strcmp(owner, "-") != 0 ? owner : "(departed)");
	}
	if (json_array_size(json_object_get(r, "mappings")) == 0)
		return;
	printf("\nmappings:\n");
	json_array_foreach(json_object_get(r, "mappings"), i, x)
	{
		printf("  %s %5lld -> %s %s:%lld", str(x, "proto"),
		       (long long)num(x, "public_port"), str(x, "owner"), str(x, "guest"),
		       (long long)num(x, "guest_port"));
		if (num(x, "expires_ms")) {
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			long long left = (long long)num(x, "expires_ms") -
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

static int cmd_nat(const struct options *o, int argc, char **argv)
{
	json_t *r;
	const char *sub = argc > 1 ? argv[1] : "show";
	if (strcmp(sub, "show") == 0) {
		if (argc > 2)
			return usage_error("nat", "nat: unexpected argument \"%s\"", argv[2]);
		if (call(o, "nat", NULL, &r) != 0)
			return 1;
		return print_or_json(o, r, print_nat);
	}
	json_int_t port, pub;
	json_t *args;
	if (strcmp(sub, "expose") == 0) {
		if (argc != 5 && !(argc == 7 && strcmp(argv[5], "--public-port") == 0))
			return usage_error("nat", "nat expose: expected HOST PROTO PORT "
			                          "[--public-port P]");
		if (!parse_port_arg(argv[4], &port))
			return usage_error("nat", "nat expose: PORT \"%s\": expected 1 to 65535",
			                   argv[4]);
		pub = port;
		if (argc == 7 && !parse_port_arg(argv[6], &pub))
			return usage_error("nat",
			                   "nat expose: --public-port \"%s\": expected 1 to 65535",
			                   argv[6]);
		args = json_pack("{s:s, s:s, s:I, s:I}", "host", argv[2], "proto", argv[3], "port",
		                 port, "public_port", pub);
	} else if (strcmp(sub, "unexpose") == 0) {
		if (argc != 4 || !parse_port_arg(argv[3], &pub))
			return usage_error("nat", "nat unexpose: expected PROTO PUBLIC-PORT");
		args = json_pack("{s:s, s:I}", "proto", argv[2], "public_port", pub);
	} else {
		return usage_error("nat", "nat: unknown subcommand \"%s\"", sub);
	}
	if (call(o, strcmp(sub, "expose") == 0 ? "nat.expose" : "nat.unexpose", args, &r) != 0)
		return 1;
	if (o->json)
		return print_or_json(o, r, NULL);
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
	       json_is_string(json_object_get(m, "host")) ? str(m, "host") : "none yet");
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
			snprintf(where, sizeof(where), "%s/%d", str(x, "dpid"),
			         (int)num(x, "port"));
		printf("%-17s  %-16s %-15s %-21s %s\n", str(x, "mac"), str(x, "name"),
		       str(x, "address"), where, str(x, "managed_by"));
	}
}

static int cmd_devices(const struct options *o, int argc, char **argv)
{
	json_t *r;
	const char *sub = argc > 1 ? argv[1] : "list";
	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return usage_error("devices", "devices list: unexpected argument \"%s\"",
			                   argv[2]);
		if (call(o, "devices", NULL, &r) != 0)
			return 1;
		return print_or_json(o, r, print_devices);
	}
	json_t *args;
	if (strcmp(sub, "allow") == 0) {
		if (argc != 5 || strcmp(argv[3], "--name") != 0)
			return usage_error("devices", "devices allow: expected MAC --name NAME");
		args = json_pack("{s:s, s:s}", "mac", argv[2], "name", argv[4]);
	} else if (strcmp(sub, "remove") == 0) {
		if (argc != 3)
			return usage_error("devices", "devices remove: expected one MAC");
		args = json_pack("{s:s}", "mac", argv[2]);
	} else {
		return usage_error("devices", "devices: unknown subcommand \"%s\"", sub);
	}
	if (call(o, sub[0] == 'a' ? "devices.allow" : "devices.remove", args, &r) != 0)
		return 1;
	if (o->json)
		return print_or_json(o, r, NULL);
	printf("%s %s\n", argv[2], sub[0] == 'a' ? "allowed" : "removed");
	json_decref(r);
	return 0;
}

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
     "locations, links, attestations, devices, manager).\n",
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
     "Every member: its state (admitted, refused, revoked, not admitted), guest and\n"
     "control addresses, MAC, where its AEE meets the network (switch datapath\n"
     "id / port), its measurement, when it was last attested, and why it was\n"
     "refused. Only an admitted host's port carries more than control traffic.\n"
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
