#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "ettmd/config.h"

static const char good[] = "# host 1 of the lab\n"
                           "[host]\n"
                           "name = h1\n"
                           "id = 1   # its number\n"
                           "state-dir = \"/run/ettm lab/h1\"\n"
                           "control-socket = /run/ettm/h1.sock\n"
                           "\n"
                           "[datapath]\n"
                           "  guest-interface = g0\n"
                           "uplink-interface=u0\n"
                           "guest-address = 10.77.1.1\n"
                           "control-address = 10.77.0.1/16\n";

static void test_good_file(void **state)
{
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_parse(good, strlen(good), "h1.conf", &c, &error), 0);
	assert_string_equal(c.name, "h1");
	assert_int_equal(c.id, 1);
	assert_string_equal(c.state_dir, "/run/ettm lab/h1");
	assert_string_equal(c.control_socket, "/run/ettm/h1.sock");
	assert_string_equal(c.datapath.guest_if, "g0");
	assert_string_equal(c.datapath.uplink_if, "u0");
	assert_string_equal(inet_ntoa(c.datapath.guest_addr), "10.77.1.1");
	assert_string_equal(inet_ntoa(c.datapath.control_addr), "10.77.0.1");
	assert_int_equal(c.datapath.control_plen, 16);
}

static void test_store_section(void **state)
{
	static const char text[] = "[host]\nname=h2\nid=2\n[datapath]\n"
	                           "guest-address=10.77.1.2\ncontrol-address=10.77.0.2/16\n"
	                           "[store]\nbootstrap = true\n"
	                           "seeds = 10.77.0.1:7701 , 10.77.0.3:7701\n"
	                           "raft-port = 9000\npeer-port = 9001\nelection-ms = 500\n"
	                           "heartbeat-ms = 100\nsnapshot-threshold = 1024\nvoters = 5\n"
	                           "promote-after-ms = 2000\ntls = false\n";
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_parse(text, strlen(text), "s.conf", &c, &error), 0);
	assert_true(c.store.bootstrap);
	assert_int_equal(c.store.n_seeds, 2);
	assert_string_equal(c.store.seeds[0], "10.77.0.1:7701");
	assert_string_equal(c.store.seeds[1], "10.77.0.3:7701");
	assert_int_equal(c.raft_port, 9000);
	assert_int_equal(c.peer_port, 9001);
	assert_int_equal(c.store.election_ms, 500);
	assert_int_equal(c.store.heartbeat_ms, 100);
	assert_int_equal(c.store.snapshot_threshold, 1024);
	assert_int_equal(c.store.voters, 5);
	assert_int_equal(c.store.promote_after_ms, 2000);
	assert_false(c.tls);
}

static void test_switch_section(void **state)
{
	static const char text[] = "[host]\nname=h2\nid=2\n[datapath]\n"
	                           "guest-address=10.77.1.2\ncontrol-address=10.77.0.2/16\n"
	                           "[switch]\nswitches = 10.77.255.1:6653, 10.77.255.2:6653\n"
	                           "uplinks = 1/isp, 00000000000000a2/up2\n"
	                           "stats-interval-ms = 500\nfiat-after-ms = 0\n"
	                           "[host]\nnetwork-ca = /etc/ettm/network-ca.pem\n";
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_parse(text, strlen(text), "s.conf", &c, &error), 0);
	assert_int_equal(c.sw.n_switches, 2);
	assert_string_equal(c.sw.switches[1], "10.77.255.2:6653");
	assert_int_equal(c.sw.n_uplinks, 2);
	assert_true(c.sw.uplinks[0].dpid == 1);
	assert_string_equal(c.sw.uplinks[0].port, "isp");
	assert_true(c.sw.uplinks[1].dpid == 0xa2);
	assert_int_equal(c.sw.stats_interval_ms, 500);
	assert_int_equal(c.sw.lldp_interval_ms, 1000);
	assert_int_equal(c.sw.link_timeout_ms, 2500);
	assert_int_equal(c.sw.fiat_after_ms, 0);
	assert_string_equal(c.network_ca, "/etc/ettm/network-ca.pem");
}

static void test_defaults(void **state)
{
	static const char minimal[] = "[host]\nname=a\nid=65535\n[datapath]\n"
	                              "guest-address=1.2.3.4\ncontrol-address=1.2.3.5/24";
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_parse(minimal, strlen(minimal), "m.conf", &c, &error), 0);
	assert_int_equal(c.id, 65535);
	assert_string_equal(c.state_dir, "/var/lib/ettm");
	assert_string_equal(c.control_socket, "/run/ettm/ettmd.sock");
	assert_string_equal(c.datapath.guest_if, "g0");
	assert_string_equal(c.datapath.uplink_if, "u0");
	/* Pre-vote on, 250/50 ms (docs/store.md), snapshots every 8192 entries. */
	assert_false(c.store.bootstrap);
	assert_int_equal(c.store.n_seeds, 0);
	assert_int_equal(c.store.election_ms, 250);
	assert_int_equal(c.store.heartbeat_ms, 50);
	assert_int_equal(c.store.snapshot_threshold, 8192);
	assert_int_equal(c.store.voters, 0);
	assert_int_equal(c.raft_port, 7700);
	assert_int_equal(c.peer_port, 7701);
	assert_true(c.tls); /* the agents' channels are TLS unless told */
}

struct bad_case {
	const char *text;
	const char *error;
};

#define BASE                                                                                       \
	"[host]\nname = h1\nid = 1\n[datapath]\nguest-address = 10.77.1.1\n"                       \
	"control-address = 10.77.0.1/16\n"
#define SWITCH "[switch]\nswitches = 10.77.255.1:6653\nuplinks = 1/isp\n"

static const struct bad_case bad_cases[] = {
    {"[host]\nname = h1\nid = 1\nnetwork-ca = /etc/ettm/ca.pem\n[datapath]\n"
     "guest-address = 10.77.1.1\ncontrol-address = 10.77.0.1/16\n[store]\ntls = false\n",
     "x.conf:4: host.network-ca needs store.tls = true: the agent shows its TLS identity to "
     "the switches"},
    {"[host]\nnetwork-ca = ca.pem\n",
     "x.conf:2: host.network-ca: expected an absolute path, got \"ca.pem\""},
    {BASE "[nat]\npublic-addresses = 203.0.113.10\ngateways = 203.0.113.1\n",
     "x.conf:8: nat.public-addresses needs switch.switches: the switches steer inbound traffic "
     "to its owner"},
    {BASE SWITCH "[nat]\npublic-addresses = 203.0.113.10, 203.0.113.11\ngateways = 203.0.113.1\n",
     "x.conf:11: nat.public-addresses: 2 address(es) for 1 uplink(s) in switch.uplinks; give "
     "one per uplink"},
    {BASE SWITCH "[nat]\npublic-addresses = 203.0.113.10\n",
     "x.conf:11: nat.public-addresses needs nat.gateways (the ISP gateway)"},
    {"[nat]\nexpose = tcp/80-70\n",
     "x.conf:2: nat.expose: expected up to 16 comma-separated PROTO/PORT or PROTO/LOW-HIGH (tcp "
     "or udp), got \"tcp/80-70\""},
    /* 17 ranges: one past the limit, named with it. */
    {"[nat]\nexpose = tcp/1,tcp/2,tcp/3,tcp/4,tcp/5,tcp/6,tcp/7,tcp/8,tcp/9,tcp/10,tcp/11,tcp/12,"
     "tcp/13,tcp/14,tcp/15,tcp/16,udp/17\n",
     "x.conf:2: nat.expose: expected up to 16 comma-separated PROTO/PORT or PROTO/LOW-HIGH (tcp "
     "or udp), got \"tcp/1,tcp/2,tcp/3,tcp/4,tcp/5,tcp/6,tcp/7,tcp/8,tcp/9,tcp/10,tcp/11,tcp/12,"
     "tcp/13,tcp/14,tcp/15,tcp/16,udp/17\""},
    {"[nat]\nexpose = sctp/80\n",
     "x.conf:2: nat.expose: expected up to 16 comma-separated PROTO/PORT or PROTO/LOW-HIGH (tcp "
     "or udp), got \"sctp/80\""},
    {"[nat]\nfiltering = full-cone\n",
     "x.conf:2: nat.filtering: expected endpoint-independent, address-dependent or "
     "address-and-port-dependent, got \"full-cone\""},
    {"[nat]\nblock-size = 1000\n",
     "x.conf:2: nat.block-size: expected a power of two from 16 to 32768, got \"1000\""},
    {"[nat]\npublic-addresses = 203.0.113\n",
     "x.conf:2: nat.public-addresses: expected 1 to 8 comma-separated IPv4 addresses, got "
     "\"203.0.113\""},
    {BASE SWITCH "[nat]\npublic-addresses = 203.0.113.10\ngateways = 203.0.113.1\n"
                 "block-size = 32768\nfirst-port = 40000\n",
     "x.conf: nat.first-port 40000 leaves no room for a block of 32768 ports"},
    {"[host]\nname = h1\nid = 1\ncolour = blue\n", "x.conf:4: unknown key host.colour"},
    {"[hots]\n",
     "x.conf:1: unknown section [hots] (expected [host], [datapath], [store], [switch], [nat] "
     "or [trust])"},
    {BASE "[trust]\ntcti = swtpm:path=/run/tpm/sock\n",
     "x.conf:8: trust.tcti needs trust.ca (the TPM manufacturers' CA certificates that EK "
     "certificates are checked against)"},
    {"[trust]\npcr = 7\n",
     "x.conf:2: trust.pcr: expected 16 or 23 (a PCR resettable at locality 0), got \"7\""},
    {"[trust]\nca = certs\n", "x.conf:2: trust.ca: expected an absolute path, got \"certs\""},
    {"name = h1\n", "x.conf:1: key 'name' outside of a section"},
    {"[switch]\nswitches = 10.77.255.1\n",
     "x.conf:2: switch.switches: expected 1 to 64 comma-separated A.B.C.D:PORT switch OpenFlow "
     "addresses, got \"10.77.255.1\""},
    {"[switch]\nuplinks = 1:isp\n",
     "x.conf:2: switch.uplinks: expected 1 to 8 comma-separated DPID/PORT-NAME (hex datapath "
     "id, switch port name), got \"1:isp\""},
    {"[host]\nname h1\n", "x.conf:2: expected 'key = value', '[section]' or a comment"},
    {"[host\n", "x.conf:1: expected '[section]'"},
    {"[host]\nname = H1\n",
     "x.conf:2: host.name: expected a name of 1-31 characters a-z, 0-9 and '-', starting "
     "with a letter, got \"H1\""},
    {"[host]\nid = 0\n", "x.conf:2: host.id: expected a number from 1 to 65535, got \"0\""},
    {"[host]\nid = 65536\n", "x.conf:2: host.id: expected a number from 1 to 65535, got \"65536\""},
    {"[host]\nid = -1\n", "x.conf:2: host.id: expected a number from 1 to 65535, got \"-1\""},
    {"[host]\nname = a\nname = b\n", "x.conf:3: host.name given twice (first on line 2)"},
    {"[host]\nstate-dir = relative\n",
     "x.conf:2: host.state-dir: expected an absolute path, got \"relative\""},
    {"[datapath]\nguest-address = 10.77.1\n",
     "x.conf:2: datapath.guest-address: expected an IPv4 address, got \"10.77.1\""},
    {"[datapath]\ncontrol-address = 10.77.0.1\n",
     "x.conf:2: datapath.control-address: expected an IPv4 address with a prefix length, "
     "e.g. 10.77.0.1/16, got \"10.77.0.1\""},
    {"[datapath]\ncontrol-address = 10.77.0.1/33\n",
     "x.conf:2: datapath.control-address: expected an IPv4 address with a prefix length, "
     "e.g. 10.77.0.1/16, got \"10.77.0.1/33\""},
    {"[datapath]\nguest-interface = a-very-long-interface\n",
     "x.conf:2: datapath.guest-interface: expected an interface name of 1 to 15 characters, "
     "got \"a-very-long-interface\""},
    {"[host]\nname = \"h1\n", "x.conf:2: unterminated quoted value"},
    {"[host]\nname = \"h1\" x\n", "x.conf:2: unexpected text after the quoted value"},
    {"[host]\n= h1\n", "x.conf:2: missing key before '='"},
    {"[host]\nname = h1\n", "x.conf: missing required key host.id"},
    {"[host]\nname = h1\nid = 1\n[datapath]\nguest-address=1.1.1.1\n"
     "control-address=1.1.1.2/8\nguest-interface=x\nuplink-interface=x\n",
     "x.conf: datapath.guest-interface and datapath.uplink-interface are both \"x\""},
};

static void test_trust_section(void **state)
{
	static const char text[] = BASE "[trust]\ntcti = swtpm:path=/run/tpm/sock\n"
	                                "ca = /etc/ettm/tpm-ca\nreattest-interval-ms = 5000\n";
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_parse(BASE, strlen(BASE), "t.conf", &c, &error), 0);
	assert_false(attest_enabled(&c.trust));
	assert_int_equal(c.trust.pcr, 16);
	assert_int_equal(c.trust.reattest_ms, 30000);
	assert_int_equal(config_parse(text, strlen(text), "t.conf", &c, &error), 0);
	assert_true(attest_enabled(&c.trust));
	assert_string_equal(c.trust.tcti, "swtpm:path=/run/tpm/sock");
	assert_string_equal(c.trust.ca, "/etc/ettm/tpm-ca");
	assert_int_equal(c.trust.reattest_ms, 5000);
}

/* Two hosts of one network, with the same settings written differently,
 * measure the same; a setting that changes behaviour changes it. */
static void test_measured_configuration(void **state)
{
	static const char h1[] = "[host]\nname = h1\nid = 1\n[datapath]\n"
	                         "guest-address = 10.77.1.1\ncontrol-address = 10.77.0.1/16\n"
	                         "[store]\nbootstrap = true\nelection-ms = 400\n"
	                         "[trust]\ntcti = swtpm:path=/a\nca = /ca\n";
	static const char h2[] = "# host two\n[trust]\nca = \"/ca\"\ntcti = device:/dev/tpmrm0\n"
	                         "[store]\nelection-ms = 400   # slower\n[datapath]\n"
	                         "control-address = 10.77.0.2/16\nguest-address = 10.77.1.2\n"
	                         "[host]\nid = 2\nname = h2\n";
	static const char other[] = "[host]\nname = h1\nid = 1\n[datapath]\n"
	                            "guest-address = 10.77.1.1\ncontrol-address = 10.77.0.1/16\n"
	                            "[store]\nelection-ms = 500\n";
	char *a, *b, *c, *error = NULL;
	(void)state;
	assert_int_equal(config_measured(h1, strlen(h1), "h1", &a, &error), 0);
	assert_int_equal(config_measured(h2, strlen(h2), "h2", &b, &error), 0);
	assert_int_equal(config_measured(other, strlen(other), "o", &c, &error), 0);
	assert_string_equal(a, "store.election-ms = 400\ntrust.ca = /ca\n");
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	free(a);
	free(b);
	free(c);
	assert_int_equal(config_measured("[hots]\n", 7, "bad", &a, &error), -EINVAL);
	assert_string_equal(error, "bad:1: unknown section [hots] (expected [host], [datapath], "
	                           "[store], [switch], [nat] or [trust])");
	free(error);
}

static void test_nat_section(void **state)
{
	static const char text[] = BASE SWITCH "[nat]\npublic-addresses = 203.0.113.10\n"
	                                       "gateways = 203.0.113.1\nblock-size = 512\n"
	                                       "expose = tcp/8080, udp/5000-5010\n";
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_parse(text, strlen(text), "n.conf", &c, &error), 0);
	assert_int_equal(c.nat.n_publics, 1);
	assert_int_equal(ntohl(c.nat.publics[0].s_addr), 0xcb00710a);
	assert_int_equal(c.nat.n_gateways, 1);
	assert_int_equal(c.nat.block_size, 512);
	assert_int_equal(c.nat.first_port, 1024);
	assert_int_equal(c.nat.reclaim_after_ms, 60000);
	assert_true(nat_enabled(&c.nat));
	assert_int_equal(c.nat.n_expose, 2);
	/* As many as NAT_EXPOSE_MAX: all kept. */
	static const char sixteen[] = BASE "[nat]\nexpose = tcp/1,tcp/2,tcp/3,tcp/4,tcp/5,tcp/6,"
	                                   "tcp/7,tcp/8,tcp/9,tcp/10,tcp/11,tcp/12,tcp/13,tcp/14,"
	                                   "tcp/15,udp/16\n";
	struct config s;
	assert_int_equal(config_parse(sixteen, strlen(sixteen), "s.conf", &s, &error), 0);
	assert_int_equal(s.nat.n_expose, NAT_EXPOSE_MAX);
	assert_true(nat_may_expose(&s.nat, 17, 16));
	assert_true(nat_may_expose(&c.nat, 6, 8080));
	assert_false(nat_may_expose(&c.nat, 17, 8080));
	assert_true(nat_may_expose(&c.nat, 17, 5010));
	assert_false(nat_may_expose(&c.nat, 17, 5011));
	assert_int_equal(c.nat.filtering, NAT_FILTER_ADDRESS); /* the default */
	static const char modes[][200] = {BASE "[nat]\nfiltering = endpoint-independent\n",
	                                  BASE "[nat]\nfiltering = address-and-port-dependent\n"};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(config_parse(modes[i], strlen(modes[i]), "n.conf", &c, &error), 0);
		assert_int_equal(c.nat.filtering,
		                 i ? NAT_FILTER_ADDRESS_PORT : NAT_FILTER_ENDPOINT);
	}
}

/* 64 switches are taken; a 65th is refused with the bound named. */
static void test_switch_count_bound(void **state)
{
	(void)state;
	char text[4096] = BASE "[switch]\nswitches = ";
	for (unsigned n = 1; n <= 65; n++) {
		size_t at = strlen(text);
		snprintf(text + at, sizeof(text) - at, "%s10.77.255.%u:6653", n > 1 ? "," : "", n);
		if (n < 64)
			continue;
		char file[4200];
		snprintf(file, sizeof(file), "%s\n", text);
		struct config c;
		char *error = NULL;
		int r = config_parse(file, strlen(file), "s.conf", &c, &error);
		if (n == 64) {
			if (r != 0)
				fail_msg("%s", error);
			assert_int_equal(c.sw.n_switches, 64);
			assert_string_equal(c.sw.switches[63], "10.77.255.64:6653");
		} else {
			assert_int_equal(r, -EINVAL);
			assert_non_null(strstr(error, "switch.switches: expected 1 to 64 comma-separated"));
			free(error);
		}
	}
}

static void test_bad_files(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct config c;
		memset(&c, 0x5a, sizeof(c));
		struct config before = c;
		char *error = NULL;
		int r = config_parse(bad_cases[i].text, strlen(bad_cases[i].text), "x.conf", &c,
		                     &error);
		if (r != -EINVAL || strcmp(error, bad_cases[i].error) != 0)
			fail_msg("case %zu: got %d \"%s\", expected \"%s\"", i, r, error,
			         bad_cases[i].error);
		free(error);
		/* A rejected file leaves the caller's configuration alone. */
		assert_memory_equal(&c, &before, sizeof(c));
	}
}

static void test_nul_and_long_lines(void **state)
{
	struct config c;
	char *error = NULL;
	static char text[8192];
	(void)state;

	static const char nul[] = "[host]\nna\0me = x\n";
	assert_int_equal(config_parse(nul, sizeof(nul) - 1, "x.conf", &c, &error), -EINVAL);
	assert_string_equal(error, "x.conf:2: NUL byte in line");
	free(error);
	error = NULL;

	memset(text, 'a', sizeof(text));
	assert_int_equal(config_parse(text, sizeof(text), "x.conf", &c, &error), -EINVAL);
	assert_string_equal(error, "x.conf:1: line longer than 4096 bytes");
	free(error);
}

static void test_load_missing_file(void **state)
{
	struct config c;
	char *error = NULL;
	(void)state;
	assert_int_equal(config_load("/nonexistent/ettmd.conf", &c, &error), -ENOENT);
	assert_string_equal(error, "/nonexistent/ettmd.conf: No such file or directory");
	free(error);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/ettm-test-config-XXXXXX";
	int fd = mkstemp(path);
	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
	close(fd);
	struct config c;
	char *error = NULL;
	int r = config_load(path, &c, &error);
	unlink(path);
	assert_int_equal(r, 0);
	assert_string_equal(c.name, "h1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_file),
	    cmocka_unit_test(test_switch_count_bound),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_store_section),
	    cmocka_unit_test(test_switch_section),
	    cmocka_unit_test(test_nat_section),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_nul_and_long_lines),
	    cmocka_unit_test(test_load_missing_file),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_trust_section),
	    cmocka_unit_test(test_measured_configuration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
