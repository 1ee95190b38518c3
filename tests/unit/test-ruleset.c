#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "datapath/ruleset.h"
#include "golden.h"

static struct dp_config lab_host(int n)
{
	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	char addr[32];
	snprintf(addr, sizeof(addr), "10.77.1.%d", n);
	inet_pton(AF_INET, addr, &cfg.guest_addr);
	snprintf(addr, sizeof(addr), "10.77.0.%d", n);
	inet_pton(AF_INET, addr, &cfg.control_addr);
	return cfg;
}

static char *render(const struct dp_config *cfg)
{
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(dp_ruleset_build(cfg, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	dp_ruleset_free(&rs);
	return text;
}

static void test_render_lab_host(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	char *text = render(&cfg);
	assert_golden("ruleset-h1.nft", text);
	free(text);
}

static void test_render_other_names(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(42);
	strcpy(cfg.guest_if, "veth-guest");
	strcpy(cfg.uplink_if, "enp3s0");
	char *text = render(&cfg);
	assert_golden("ruleset-renamed.nft", text);
	free(text);
}

/* The same configuration renders the same bytes: generations count real
 * changes only. */
static void test_render_is_deterministic(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(3);
	char *a = render(&cfg), *b = render(&cfg);
	assert_string_equal(a, b);
	free(a);
	free(b);
}

static void test_has(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	assert_int_equal(dp_ruleset_build(&cfg, NULL, &rs), 0);
	assert_true(dp_ruleset_has(&rs, "chain", "forward"));
	assert_true(dp_ruleset_has(&rs, "counter", "spoofed"));
	assert_false(dp_ruleset_has(&rs, "chain", "spoofed"));
	assert_false(dp_ruleset_has(&rs, "set", "forward"));
	dp_ruleset_free(&rs);
}

static void test_transaction_fresh(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx;
	assert_int_equal(dp_ruleset_build(&cfg, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, NULL, &tx), 0);
	assert_golden("transaction-fresh.nft", tx);
	free(tx);
	dp_ruleset_free(&rs);
}

/* A running table (as `nft -j list table inet ettm` prints it) with a chain
 * and a counter the new ruleset lacks, and an object of another table that
 * must be left alone. */
static const char running[] =
    "{\"nftables\": [{\"metainfo\": {\"version\": \"1.0.6\", \"json_schema_version\": 1}},"
    "{\"table\": {\"family\": \"inet\", \"name\": \"ettm\", \"handle\": 1}},"
    "{\"counter\": {\"family\": \"inet\", \"name\": \"guest_tx\", \"table\": \"ettm\","
    " \"handle\": 2, \"packets\": 5, \"bytes\": 420}},"
    "{\"counter\": {\"family\": \"inet\", \"name\": \"old_counter\", \"table\": \"ettm\","
    " \"handle\": 3, \"packets\": 0, \"bytes\": 0}},"
    "{\"counter\": {\"family\": \"ip\", \"name\": \"old_counter\", \"table\": \"other\","
    " \"handle\": 3, \"packets\": 0, \"bytes\": 0}},"
    "{\"chain\": {\"family\": \"inet\", \"table\": \"ettm\", \"name\": \"forward\","
    " \"handle\": 4, \"type\": \"filter\", \"hook\": \"forward\", \"prio\": 0,"
    " \"policy\": \"drop\"}},"
    "{\"chain\": {\"family\": \"inet\", \"table\": \"ettm\", \"name\": \"old_chain\","
    " \"handle\": 5}}]}";

static void test_transaction_deletes_stale(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx;
	assert_int_equal(dp_ruleset_build(&cfg, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, running, &tx), 0);
	assert_golden("transaction-stale.nft", tx);
	free(tx);
	dp_ruleset_free(&rs);
}

static void test_transaction_bad_listing(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_ruleset rs;
	char *tx = NULL;
	assert_int_equal(dp_ruleset_build(&cfg, NULL, &rs), 0);
	assert_int_equal(dp_ruleset_transaction(&rs, "{\"nftables\": 3}", &tx), -EINVAL);
	assert_int_equal(dp_ruleset_transaction(&rs, "not json", &tx), -EINVAL);
	assert_null(tx);
	dp_ruleset_free(&rs);
}

/* The devices' manager: device frames to and from the devices' side, their
 * forwarding under the guest's rules, one device whose address is not
 * known yet (steered, but nothing of it forwarded). */
static void test_render_devices(void **state)
{
	(void)state;
	struct dp_config cfg = lab_host(1);
	struct dp_nat nat = {.enabled = true, .n_own = 1, .n_publics = 1};
	inet_pton(AF_INET, "203.0.113.10", &nat.public_addr);
	nat.publics[0] = nat.public_addr;
	nat.own[0] = (struct dp_nat_block){.start = 1024, .size = 1024};
	struct dp_devices d = {.enabled = true, .own_mac = {2, 0, 0, 0, 0, 1}, .n = 2};
	d.v[0] = (struct dp_device){.mac = {2, 0xaa, 0, 0, 0, 1}};
	inet_pton(AF_INET, "10.77.2.1", &d.v[0].addr);
	d.v[1] = (struct dp_device){.mac = {2, 0xaa, 0, 0, 0, 2}};
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(dp_ruleset_build_devices(&cfg, &nat, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_golden("ruleset-devices.nft", text);
	free(text);
	dp_ruleset_free(&rs);

	/* Not the manager: exactly the ruleset without devices. */
	char *plain;
	d.enabled = false;
	assert_int_equal(dp_ruleset_build_devices(&cfg, NULL, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	dp_ruleset_free(&rs);
	plain = render(&cfg);
	assert_string_equal(text, plain);
	free(text);
	free(plain);

	/* Manager of devices with no address yet, before any NAT block:
	 * nothing of theirs is forwarded, only steered and dropped. */
	d.enabled = true;
	d.v[0].addr.s_addr = 0;
	nat.n_own = 0;
	assert_int_equal(dp_ruleset_build_devices(&cfg, &nat, &d, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	assert_null(strstr(text, "iifname \"dv1\" oifname"));
	assert_non_null(
	    strstr(text, "iifname \"dv1\" meta nfproto ipv4 counter name \"spoofed\" drop"));
	assert_non_null(strstr(text, "fwd to \"dv0\""));
	free(text);
	dp_ruleset_free(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_lab_host),
	    cmocka_unit_test(test_render_other_names),
	    cmocka_unit_test(test_render_is_deterministic),
	    cmocka_unit_test(test_has),
	    cmocka_unit_test(test_transaction_fresh),
	    cmocka_unit_test(test_transaction_deletes_stale),
	    cmocka_unit_test(test_transaction_bad_listing),
	    cmocka_unit_test(test_render_devices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
