/* ettmd's configuration file: the table of typed keys and their parsers,
 * the parse into struct config with its cross-key checks, the measured
 * form of the file (what the TPM measurement covers), and reading the
 * file. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cleanup.h"
#include "lib/error.h"

#define CONFIG_FILE_MAX (1 << 20)
#define LINE_MAX_LEN    4096

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* A key's parser: reads @value into the field at @field; on error writes
 * what was expected into @expected and returns -EINVAL. */
typedef int (*value_parser)(const char *value, void *field, char *expected, size_t size);

struct key {
	const char *section;
	const char *name;
	value_parser parse;
	size_t offset;
	bool required;
	/* Says who the host is or where its files are, not how it behaves:
	 * left out of the measured configuration (config_measured()). */
	bool identity;
};

static int parse_name(const char *value, void *field, char *expected, size_t size)
{
	size_t n = strlen(value);
	bool ok = n >= 1 && n < CONFIG_NAME_MAX && islower((unsigned char)value[0]);
	for (size_t i = 0; ok && i < n; i++)
		ok = islower((unsigned char)value[i]) || isdigit((unsigned char)value[i]) ||
		     value[i] == '-';
	if (!ok) {
		snprintf(expected, size,
		         "expected a name of 1-31 characters a-z, 0-9 and '-', starting with a "
		         "letter");
		return -EINVAL;
	}
	strcpy(field, value);
	return 0;
}

static int parse_id(const char *value, void *field, char *expected, size_t size)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(value, &end, 10);
	if (!isdigit((unsigned char)value[0]) || *end || errno || v < 1 || v > 65535) {
		snprintf(expected, size, "expected a number from 1 to 65535");
		return -EINVAL;
	}
	*(uint16_t *)field = (uint16_t)v;
	return 0;
}

static int parse_string(const char *value, void *field, size_t field_size, const char *what,
                        char *expected, size_t size)
{
	if (value[0] == '\0' || strlen(value) >= field_size) {
		snprintf(expected, size, "expected %s of 1 to %zu characters", what,
		         field_size - 1);
		return -EINVAL;
	}
	strcpy(field, value);
	return 0;
}

static int parse_path(const char *value, void *field, char *expected, size_t size)
{
	if (value[0] != '/') {
		snprintf(expected, size, "expected an absolute path");
		return -EINVAL;
	}
	return parse_string(value, field, PATH_MAX, "a path", expected, size);
}

static int parse_socket(const char *value, void *field, char *expected, size_t size)
{
	if (value[0] != '/') {
		snprintf(expected, size, "expected an absolute path");
		return -EINVAL;
	}
	return parse_string(value, field, CONFIG_SOCKET_MAX, "a socket path", expected, size);
}

static int parse_ifname(const char *value, void *field, char *expected, size_t size)
{
	for (const char *p = value; *p; p++) {
		if (*p == '/' || isspace((unsigned char)*p) || *p == ':') {
			snprintf(expected, size, "expected an interface name");
			return -EINVAL;
		}
	}
	return parse_string(value, field, IF_NAMESIZE, "an interface name", expected, size);
}

static int parse_ipv4(const char *value, void *field, char *expected, size_t size)
{
	if (inet_pton(AF_INET, value, field) != 1) {
		snprintf(expected, size, "expected an IPv4 address");
		return -EINVAL;
	}
	return 0;
}

/* "A.B.C.D/LEN" into the control address and its prefix length. */
static int parse_ipv4_prefix(const char *value, void *field, char *expected, size_t size)
{
	struct dp_config *dp = field;
	char addr[INET_ADDRSTRLEN];
	const char *slash = strchr(value, '/');
	char *end;

	if (!slash || (size_t)(slash - value) >= sizeof(addr))
		goto bad;
	memcpy(addr, value, (size_t)(slash - value));
	addr[slash - value] = '\0';
	errno = 0;
	unsigned long plen = strtoul(slash + 1, &end, 10);
	if (!isdigit((unsigned char)slash[1]) || *end || errno || plen < 1 || plen > 32)
		goto bad;
	if (inet_pton(AF_INET, addr, &dp->control_addr) != 1)
		goto bad;
	dp->control_plen = (uint8_t)plen;
	return 0;
bad:
	snprintf(expected, size,
	         "expected an IPv4 address with a prefix length, e.g. 10.77.0.1/16");
	return -EINVAL;
}

static int parse_bool(const char *value, void *field, char *expected, size_t size)
{
	if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
		*(bool *)field = value[0] == 't';
		return 0;
	}
	snprintf(expected, size, "expected true or false");
	return -EINVAL;
}

static int parse_uint_range(const char *value, unsigned long lo, unsigned long hi,
                            unsigned long *ret, char *expected, size_t size)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(value, &end, 10);
	if (!isdigit((unsigned char)value[0]) || *end || errno || v < lo || v > hi) {
		snprintf(expected, size, "expected a number from %lu to %lu", lo, hi);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int parse_port(const char *value, void *field, char *expected, size_t size)
{
	unsigned long v;
	int r = parse_uint_range(value, 1, 65535, &v, expected, size);
	if (r == 0)
		*(uint16_t *)field = (uint16_t)v;
	return r;
}

static int parse_ms(const char *value, void *field, char *expected, size_t size)
{
	unsigned long v;
	int r = parse_uint_range(value, 10, 600000, &v, expected, size);
	if (r == 0)
		*(unsigned *)field = (unsigned)v;
	return r;
}

static int parse_threshold(const char *value, void *field, char *expected, size_t size)
{
	unsigned long v;
	int r = parse_uint_range(value, 64, 1000000, &v, expected, size);
	if (r == 0)
		*(unsigned *)field = (unsigned)v;
	return r;
}

static int parse_voters(const char *value, void *field, char *expected, size_t size)
{
	if (strcmp(value, "auto") == 0) {
		*(unsigned *)field = 0;
		return 0;
	}
	if (strcmp(value, "1") == 0 || strcmp(value, "3") == 0 || strcmp(value, "5") == 0 ||
	    strcmp(value, "7") == 0) {
		*(unsigned *)field = (unsigned)atoi(value);
		return 0;
	}
	snprintf(expected, size, "expected auto, 1, 3, 5 or 7");
	return -EINVAL;
}

/* "A.B.C.D:PORT, A.B.C.D:PORT, ..." into @out (@max of STORE_ADDR_MAX). */
static int parse_addr_list(const char *value, char (*out)[STORE_ADDR_MAX], unsigned max,
                           unsigned *ret_n)
{
	char copy[SW_MAX_SWITCHES * STORE_ADDR_MAX];
	unsigned n = 0;
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		tok = trim(tok);
		struct in_addr a;
		char host[INET_ADDRSTRLEN];
		char *colon = strrchr(tok, ':');
		unsigned long port;
		char ignore[8];
		if (n == max || !colon || (size_t)(colon - tok) >= sizeof(host))
			return -EINVAL;
		memcpy(host, tok, (size_t)(colon - tok));
		host[colon - tok] = '\0';
		if (inet_pton(AF_INET, host, &a) != 1 ||
		    parse_uint_range(colon + 1, 1, 65535, &port, ignore, sizeof(ignore)) < 0)
			return -EINVAL;
		snprintf(out[n++], STORE_ADDR_MAX, "%s", tok);
	}
	if (n == 0)
		return -EINVAL;
	*ret_n = n;
	return 0;
}

/* Peer API addresses to join through. */
static int parse_seeds(const char *value, void *field, char *expected, size_t size)
{
	struct store_options *o = field;
	if (parse_addr_list(value, o->seeds, STORE_MAX_SEEDS, &o->n_seeds) == 0)
		return 0;
	snprintf(expected, size, "expected 1 to %d comma-separated A.B.C.D:PORT peer addresses",
	         STORE_MAX_SEEDS);
	return -EINVAL;
}

/* The switches' OpenFlow listeners. */
static int parse_switches(const char *value, void *field, char *expected, size_t size)
{
	struct sw_options *o = field;
	if (parse_addr_list(value, o->switches, SW_MAX_SWITCHES, &o->n_switches) == 0)
		return 0;
	snprintf(expected, size,
	         "expected 1 to %d comma-separated A.B.C.D:PORT switch OpenFlow addresses",
	         SW_MAX_SWITCHES);
	return -EINVAL;
}

/* "DPID/PORT-NAME, ...": the switch ports that lead to the ISP. */
static int parse_uplinks(const char *value, void *field, char *expected, size_t size)
{
	struct sw_options *o = field;
	char copy[SW_MAX_UPLINKS * 64];
	unsigned n = 0;
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		tok = trim(tok);
		char *slash = strchr(tok, '/'), *end;
		if (n == SW_MAX_UPLINKS || !slash || slash == tok || !slash[1] ||
		    strlen(slash + 1) >= sizeof(o->uplinks[0].port))
			goto bad;
		*slash = '\0';
		errno = 0;
		uint64_t dpid = strtoull(tok, &end, 16);
		if (*end || errno || dpid == 0)
			goto bad;
		o->uplinks[n].dpid = dpid;
		snprintf(o->uplinks[n++].port, sizeof(o->uplinks[0].port), "%s", slash + 1);
	}
	if (n == 0)
		goto bad;
	o->n_uplinks = n;
	return 0;
bad:
	snprintf(expected, size,
	         "expected 1 to %d comma-separated DPID/PORT-NAME (hex datapath id, switch port "
	         "name)",
	         SW_MAX_UPLINKS);
	return -EINVAL;
}

static int parse_ms_or_zero(const char *value, void *field, char *expected, size_t size)
{
	unsigned long v;
	int r = parse_uint_range(value, 0, 600000, &v, expected, size);
	if (r == 0)
		*(unsigned *)field = (unsigned)v;
	return r;
}

/* "A.B.C.D, ..." into @out (@max). */
static int parse_ipv4_list(const char *value, struct in_addr *out, unsigned max, unsigned *ret_n)
{
	char copy[NAT_PUBLIC_MAX * 24];
	unsigned n = 0;
	if (strlen(value) >= sizeof(copy))
		return -EINVAL;
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max || inet_pton(AF_INET, trim(tok), &out[n]) != 1)
			return -EINVAL;
		n++;
	}
	if (n == 0)
		return -EINVAL;
	*ret_n = n;
	return 0;
}

static int parse_publics(const char *value, void *field, char *expected, size_t size)
{
	struct nat_options *o = field;
	if (parse_ipv4_list(value, o->publics, NAT_PUBLIC_MAX, &o->n_publics) == 0)
		return 0;
	snprintf(expected, size, "expected 1 to %d comma-separated IPv4 addresses", NAT_PUBLIC_MAX);
	return -EINVAL;
}

static int parse_gateways(const char *value, void *field, char *expected, size_t size)
{
	struct nat_options *o = field;
	if (parse_ipv4_list(value, o->gateways, NAT_PUBLIC_MAX, &o->n_gateways) == 0)
		return 0;
	snprintf(expected, size, "expected 1 to %d comma-separated IPv4 addresses", NAT_PUBLIC_MAX);
	return -EINVAL;
}

static int parse_block_size(const char *value, void *field, char *expected, size_t size)
{
	unsigned long v;
	int r = parse_uint_range(value, 16, 32768, &v, expected, size);
	if (r == 0 && (v & (v - 1))) {
		snprintf(expected, size, "expected a power of two from 16 to 32768");
		return -EINVAL;
	}
	if (r == 0)
		*(unsigned *)field = (unsigned)v;
	return r;
}

static int parse_first_port(const char *value, void *field, char *expected, size_t size)
{
	unsigned long v;
	int r = parse_uint_range(value, 1, 65535, &v, expected, size);
	if (r == 0)
		*(unsigned *)field = (unsigned)v;
	return r;
}

/* "tcp/8080, udp/5000-5010": ports a guest may expose by listening. */
static int parse_expose(const char *value, void *field, char *expected, size_t size)
{
	struct nat_options *o = field;
	char copy[NAT_EXPOSE_MAX * 24];
	unsigned n = 0;
	if (strlen(value) >= sizeof(copy))
		goto bad;
	snprintf(copy, sizeof(copy), "%s", value);
	for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		tok = trim(tok);
		char *slash = strchr(tok, '/'), *end;
		if (n == NAT_EXPOSE_MAX || !slash || !isdigit((unsigned char)slash[1]))
			goto bad;
		*slash = '\0';
		unsigned long lo = strtoul(slash + 1, &end, 10), hi = lo;
		if (*end == '-') {
			const char *from = end + 1;
			hi = strtoul(from, &end, 10);
			if (!isdigit((unsigned char)*from))
				goto bad;
		}
		if (*end || (strcmp(tok, "tcp") != 0 && strcmp(tok, "udp") != 0) || lo < 1 ||
		    hi > 65535 || lo > hi)
			goto bad;
		o->expose[n++] =
		    (struct nat_expose){tok[0] == 't' ? 6 : 17, (uint16_t)lo, (uint16_t)hi};
	}
	if (n == 0)
		goto bad;
	o->n_expose = n;
	return 0;
bad:
	snprintf(expected, size,
	         "expected up to %d comma-separated PROTO/PORT or PROTO/LOW-HIGH (tcp or udp)",
	         NAT_EXPOSE_MAX);
	return -EINVAL;
}

static int parse_filtering(const char *value, void *field, char *expected, size_t size)
{
	if (nat_filtering_parse(value, field) == 0)
		return 0;
	snprintf(expected, size,
	         "expected endpoint-independent, address-dependent or "
	         "address-and-port-dependent");
	return -EINVAL;
}

static int parse_tcti(const char *value, void *field, char *expected, size_t size)
{
	return parse_string(value, field, ATTEST_TCTI_MAX, "a TCTI (e.g. swtpm:path=SOCK)",
	                    expected, size);
}

/* Only a PCR the agent may reset at locality 0 can hold a measurement it
 * makes anew at each start (docs/trust.md). */
static int parse_pcr(const char *value, void *field, char *expected, size_t size)
{
	if (strcmp(value, "16") != 0 && strcmp(value, "23") != 0) {
		snprintf(expected, size, "expected 16 or 23 (a PCR resettable at locality 0)");
		return -EINVAL;
	}
	*(unsigned *)field = (unsigned)atoi(value);
	return 0;
}

#define FIELD(f) offsetof(struct config, f)

static const struct key keys[] = {
    {"host", "name", parse_name, FIELD(name), true, true},
    {"host", "id", parse_id, FIELD(id), true, true},
    {"host", "state-dir", parse_path, FIELD(state_dir), false, true},
    {"host", "control-socket", parse_socket, FIELD(control_socket), false, true},
    {"host", "network-ca", parse_path, FIELD(network_ca), false, false},
    {"datapath", "guest-interface", parse_ifname, FIELD(datapath.guest_if), false, false},
    {"datapath", "uplink-interface", parse_ifname, FIELD(datapath.uplink_if), false, false},
    {"datapath", "guest-address", parse_ipv4, FIELD(datapath.guest_addr), true, true},
    {"datapath", "control-address", parse_ipv4_prefix, FIELD(datapath), true, true},
    {"datapath", "guest-netns", parse_path, FIELD(guest_netns), false, true},
    {"store", "bootstrap", parse_bool, FIELD(store.bootstrap), false, true},
    {"store", "seeds", parse_seeds, FIELD(store), false, true},
    {"store", "raft-port", parse_port, FIELD(raft_port), false, false},
    {"store", "peer-port", parse_port, FIELD(peer_port), false, false},
    {"store", "tls", parse_bool, FIELD(tls), false, false},
    {"store", "election-ms", parse_ms, FIELD(store.election_ms), false, false},
    {"store", "heartbeat-ms", parse_ms, FIELD(store.heartbeat_ms), false, false},
    {"store", "snapshot-threshold", parse_threshold, FIELD(store.snapshot_threshold), false, false},
    {"store", "voters", parse_voters, FIELD(store.voters), false, false},
    {"store", "promote-after-ms", parse_ms, FIELD(store.promote_after_ms), false, false},
    {"switch", "switches", parse_switches, FIELD(sw), false, false},
    {"switch", "uplinks", parse_uplinks, FIELD(sw), false, false},
    {"switch", "stats-interval-ms", parse_ms, FIELD(sw.stats_interval_ms), false, false},
    {"switch", "lldp-interval-ms", parse_ms, FIELD(sw.lldp_interval_ms), false, false},
    {"switch", "link-timeout-ms", parse_ms, FIELD(sw.link_timeout_ms), false, false},
    {"switch", "fiat-after-ms", parse_ms_or_zero, FIELD(sw.fiat_after_ms), false, false},
    {"nat", "public-addresses", parse_publics, FIELD(nat), false, false},
    {"nat", "gateways", parse_gateways, FIELD(nat), false, false},
    {"nat", "block-size", parse_block_size, FIELD(nat.block_size), false, false},
    {"nat", "first-port", parse_first_port, FIELD(nat.first_port), false, false},
    {"nat", "reclaim-after-ms", parse_ms_or_zero, FIELD(nat.reclaim_after_ms), false, false},
    {"nat", "expose", parse_expose, FIELD(nat), false, false},
    {"nat", "filtering", parse_filtering, FIELD(nat.filtering), false, false},
    {"trust", "tcti", parse_tcti, FIELD(trust.tcti), false, true},
    {"trust", "ca", parse_path, FIELD(trust.ca), false, false},
    {"trust", "pcr", parse_pcr, FIELD(trust.pcr), false, false},
    {"trust", "reattest-interval-ms", parse_ms, FIELD(trust.reattest_ms), false, false},
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static void set_defaults(struct config *c)
{
	*c = (struct config){0};
	strcpy(c->state_dir, "/var/lib/ettm");
	strcpy(c->control_socket, "/run/ettm/ettmd.sock");
	strcpy(c->datapath.guest_if, "g0");
	strcpy(c->datapath.uplink_if, "u0");
	store_options_default(&c->store);
	sw_options_default(&c->sw);
	nat_options_default(&c->nat);
	attest_options_default(&c->trust);
	c->raft_port = 7700;
	c->peer_port = 7701;
	c->tls = true;
}

static int error_at(char **ret_error, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "FILE:LINE: message" (or "FILE: message" for line 0) into *@ret_error. */
static int error_at(char **ret_error, const char *file, unsigned line, const char *fmt, ...)
{
	char *msg;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (line)
		error_set(ret_error, -EINVAL, "%s:%u: %s", file, line, msg ? msg : "out of memory");
	else
		error_set(ret_error, -EINVAL, "%s: %s", file, msg ? msg : "out of memory");
	free(msg);
	return -EINVAL;
}

/* Splits "key = value  # comment" in place. A value may be quoted to keep
 * '#' and spaces. Returns 0, or -EINVAL with a reason in @why. */
static int split_assignment(char *line, char **ret_key, char **ret_value, const char **why)
{
	char *eq = strchr(line, '=');
	if (!eq) {
		*why = "expected 'key = value', '[section]' or a comment";
		return -EINVAL;
	}
	*eq = '\0';
	char *key = trim(line);
	char *value = eq + 1;
	while (isspace((unsigned char)*value))
		value++;
	if (*value == '"') {
		char *close = strchr(value + 1, '"');
		if (!close) {
			*why = "unterminated quoted value";
			return -EINVAL;
		}
		*close = '\0';
		char *rest = trim(close + 1);
		if (*rest && *rest != '#') {
			*why = "unexpected text after the quoted value";
			return -EINVAL;
		}
		value++;
	} else {
		char *hash = strchr(value, '#');
		if (hash)
			*hash = '\0';
		value = trim(value);
	}
	if (*key == '\0') {
		*why = "missing key before '='";
		return -EINVAL;
	}
	*ret_key = key;
	*ret_value = value;
	return 0;
}

static const struct key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static size_t key_index(const char *section, const char *name)
{
	return (size_t)(find_key(section, name) - keys);
}

static bool known_section(const char *section)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0)
			return true;
	return false;
}

/* The checks across keys of a parsed configuration; @seen_line[] gives the
 * line of each key given (0: not given) for the messages. */
static int check_config(const struct config *c, const unsigned *seen_line, const char *filename,
                        char **ret_error)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (keys[i].required && !seen_line[i])
			return error_at(ret_error, filename, 0, "missing required key %s.%s",
			                keys[i].section, keys[i].name);
	if (strcmp(c->datapath.guest_if, c->datapath.uplink_if) == 0)
		return error_at(ret_error, filename, 0,
		                "datapath.guest-interface and datapath.uplink-interface are both "
		                "\"%s\"",
		                c->datapath.guest_if);
	if (c->store.election_ms <= c->store.heartbeat_ms)
		return error_at(
		    ret_error, filename, 0,
		    "store.election-ms (%u) must be larger than store.heartbeat-ms (%u)",
		    c->store.election_ms, c->store.heartbeat_ms);
	if (c->network_ca[0] && !c->tls)
		return error_at(ret_error, filename, seen_line[key_index("host", "network-ca")],
		                "host.network-ca needs store.tls = true: the agent shows its TLS "
		                "identity to the switches");
	if (c->nat.n_publics && !c->sw.n_switches)
		return error_at(ret_error, filename,
		                seen_line[key_index("nat", "public-addresses")],
		                "nat.public-addresses needs switch.switches: the switches steer "
		                "inbound traffic to its owner");
	if (c->nat.n_publics && c->nat.n_publics != c->sw.n_uplinks)
		return error_at(ret_error, filename,
		                seen_line[key_index("nat", "public-addresses")],
		                "nat.public-addresses: %u address(es) for %u uplink(s) in "
		                "switch.uplinks; give one per uplink",
		                c->nat.n_publics, c->sw.n_uplinks);
	if (c->nat.n_publics && !c->nat.n_gateways)
		return error_at(ret_error, filename,
		                seen_line[key_index("nat", "public-addresses")],
		                "nat.public-addresses needs nat.gateways (the ISP gateway)");
	if (c->nat.n_gateways > 1 && c->nat.n_gateways != c->nat.n_publics)
		return error_at(ret_error, filename, seen_line[key_index("nat", "gateways")],
		                "nat.gateways: give one for all uplinks or one per uplink (%u)",
		                c->nat.n_publics);
	if ((c->nat.first_port + c->nat.block_size - 1) / c->nat.block_size * c->nat.block_size +
	        c->nat.block_size >
	    65536)
		return error_at(ret_error, filename, 0,
		                "nat.first-port %u leaves no room for a block of %u ports",
		                c->nat.first_port, c->nat.block_size);
	if (c->raft_port == c->peer_port)
		return error_at(ret_error, filename, 0,
		                "store.raft-port and store.peer-port are both %u", c->raft_port);
	if (c->trust.tcti[0] && !c->trust.ca[0])
		return error_at(ret_error, filename, seen_line[key_index("trust", "tcti")],
		                "trust.tcti needs trust.ca (the TPM manufacturers' CA certificates "
		                "that EK certificates are checked against)");
	return 0;
}

/* config_parse(), and when @values is not NULL the value of every key given,
 * as written (without quotes), strdup()ed into @values by key index. */
static int parse(const char *text, size_t len, const char *filename, struct config *ret_config,
                 char **values, char **ret_error)
{
	struct config c;
	unsigned seen_line[N_KEYS] = {0};
	char section[32] = "";
	char line[LINE_MAX_LEN + 1];
	unsigned lineno = 0;
	size_t pos = 0;

	set_defaults(&c);
	while (pos < len) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - start) : len - pos;
		pos += n + (nl ? 1 : 0);
		lineno++;
		if (n > LINE_MAX_LEN)
			return error_at(ret_error, filename, lineno, "line longer than %d bytes",
			                LINE_MAX_LEN);
		if (memchr(start, '\0', n))
			return error_at(ret_error, filename, lineno, "NUL byte in line");
		memcpy(line, start, n);
		line[n] = '\0';

		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			char *rest = close ? trim(close + 1) : NULL;
			if (!close || (*rest && *rest != '#'))
				return error_at(ret_error, filename, lineno,
				                "expected '[section]'");
			*close = '\0';
			char *name = trim(s + 1);
			if (!known_section(name))
				return error_at(ret_error, filename, lineno,
				                "unknown section [%s] (expected [host], "
				                "[datapath], [store], [switch], [nat] or [trust])",
				                name);
			snprintf(section, sizeof(section), "%s", name);
			continue;
		}

		char *key, *value;
		const char *why;
		if (split_assignment(s, &key, &value, &why) < 0)
			return error_at(ret_error, filename, lineno, "%s", why);
		if (section[0] == '\0')
			return error_at(ret_error, filename, lineno,
			                "key '%s' outside of a section", key);
		const struct key *k = find_key(section, key);
		if (!k)
			return error_at(ret_error, filename, lineno, "unknown key %s.%s", section,
			                key);
		size_t idx = (size_t)(k - keys);
		if (seen_line[idx])
			return error_at(ret_error, filename, lineno,
			                "%s.%s given twice (first on line %u)", section, key,
			                seen_line[idx]);
		char expected[160];
		if (k->parse(value, (char *)&c + k->offset, expected, sizeof(expected)) < 0)
			return error_at(ret_error, filename, lineno, "%s.%s: %s, got \"%s\"",
			                section, key, expected, value);
		seen_line[idx] = lineno;
		if (values && !(values[idx] = strdup(value)))
			return error_at(ret_error, filename, lineno, "out of memory");
	}

	int r = check_config(&c, seen_line, filename, ret_error);
	if (r < 0)
		return r;
	*ret_config = c;
	return 0;
}

int config_parse(const char *text, size_t len, const char *filename, struct config *ret_config,
                 char **ret_error)
{
	return parse(text, len, filename, ret_config, NULL, ret_error);
}

int config_measured(const char *text, size_t len, const char *filename, char **ret_text,
                    char **ret_error)
{
	char *values[N_KEYS] = {0};
	struct config c;
	char *out = NULL;
	size_t out_len = 0;
	int r = parse(text, len, filename, &c, values, ret_error);
	FILE *f = r == 0 ? open_memstream(&out, &out_len) : NULL;
	if (r == 0 && !f)
		r = error_set(ret_error, -ENOMEM, "%s: out of memory", filename);
	/* In the table's order, so comments, blank lines, quoting and the
	 * order of the file do not change the measurement. */
	for (size_t i = 0; f && i < N_KEYS; i++)
		if (values[i] && !keys[i].identity)
			fprintf(f, "%s.%s = %s\n", keys[i].section, keys[i].name, values[i]);
	if (f && fclose(f) != 0) {
		r = error_set(ret_error, -ENOMEM, "%s: out of memory", filename);
		out = NULL;
	}
	for (size_t i = 0; i < N_KEYS; i++)
		free(values[i]);
	if (r < 0) {
		free(out);
		return r;
	}
	*ret_text = out;
	return 0;
}

/* The whole file at @path into a NUL-terminated *ret_text. */
static int read_config(const char *path, char **ret_text, size_t *ret_len, char **ret_error)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f) {
		int r = -errno;
		return error_set(ret_error, r, "%s: %s", path, strerror(-r));
	}
	_cleanup_free_ char *buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf)
		return error_set(ret_error, -ENOMEM, "%s: out of memory", path);
	size_t n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f))
		return error_set(ret_error, -EIO, "%s: read error", path);
	if (n > CONFIG_FILE_MAX)
		return error_set(ret_error, -EFBIG, "%s: larger than %d bytes", path,
		                 CONFIG_FILE_MAX);
	buf[n] = '\0';
	*ret_text = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

int config_load(const char *path, struct config *ret_config, char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = read_config(path, &text, &len, ret_error);
	if (r < 0)
		return r;
	return config_parse(text, len, path, ret_config, ret_error);
}

int config_load_measured(const char *path, char **ret_text, char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = read_config(path, &text, &len, ret_error);
	if (r < 0)
		return r;
	return config_measured(text, len, path, ret_text, ret_error);
}
