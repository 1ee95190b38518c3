/* Unmanaged devices' pure parts: their flows on each switch, the choice of
 * their manager, what the master learns from their frames, and the
 * manager's datapath view. */
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

#include "datapath/fragment.h"
#include "datapath/ruleset.h"
#include "services/devices/devices.h"
#include "switch/desired.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "services/devices/tables.h"
#include "tables-all.h"

#define DEV_MAC "02:aa:00:00:00:01"
static const uint8_t dev_mac[6] = {2, 0xaa, 0, 0, 0, 1};
static const uint8_t h1_mac[6] = {2, 0, 0, 0, 0, 1};

static void put(struct store_state *st, const struct store_cmd *cmd)
{
	struct store_result res;
	assert_int_equal(store_state_apply(st, cmd, &res), 0);
	if (!res.applied)
		fail_msg("rejected: %s", res.reason);
}

static void member(struct store_state *st, uint64_t id, const char *name)
{
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = 1};
	STORE_CMD_ROW(&cmd, struct store_member)->id = id;
	snprintf(STORE_CMD_ROW(&cmd, struct store_member)->name,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_member)->name), "%s", name);
	snprintf(STORE_CMD_ROW(&cmd, struct store_member)->address,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_member)->address), "10.77.0.%u:7700",
	         (unsigned)id);
	put(st, &cmd);
}

static void admit(struct store_state *st, const char *host, enum store_op op)
{
	struct store_cmd a = {.table = TRUST_ADMISSIONS, .op = op, .time_ms = 1};
	snprintf(STORE_CMD_ROW(&a, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&a, struct trust_admission)->host), "%s", host);
	put(st, &a);
}

static void locate(struct store_state *st, const char *host, uint64_t dpid, uint32_t port,
                   unsigned n)
{
	struct store_cmd cmd = {.table = SWITCH_LOCATIONS, .op = STORE_PUT, .time_ms = 1};
	snprintf(STORE_CMD_ROW(&cmd, struct switch_location)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct switch_location)->host), "%s", host);
	snprintf(STORE_CMD_ROW(&cmd, struct switch_location)->mac,
	         sizeof(STORE_CMD_ROW(&cmd, struct switch_location)->mac), "02:00:00:00:00:%02x",
	         n);
	STORE_CMD_ROW(&cmd, struct switch_location)->dpid = dpid;
	STORE_CMD_ROW(&cmd, struct switch_location)->port = port;
	put(st, &cmd);
}

static void join(struct store_state *st, uint64_t a, uint32_t pa, uint64_t b, uint32_t pb)
{
	struct store_cmd cmd = {.table = SWITCH_LINKS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&cmd, struct switch_link)) = (struct switch_link){a, pa, b, pb, 1};
	put(st, &cmd);
	(*STORE_CMD_ROW(&cmd, struct switch_link)) = (struct switch_link){b, pb, a, pa, 1};
	put(st, &cmd);
}

static void device(struct store_state *st, uint32_t addr, uint64_t dpid, uint32_t port)
{
	struct store_cmd cmd = {.table = DEVICES_DEVICES, .op = STORE_PUT, .time_ms = 5};
	(*STORE_CMD_ROW(&cmd, struct devices_device)) = (struct devices_device){.mac = DEV_MAC,
	                                                                        .name = "printer",
	                                                                        .address = addr,
	                                                                        .dpid = dpid,
	                                                                        .port = port,
	                                                                        .allowed_ms = 5};
	put(st, &cmd);
}

static void manager(struct store_state *st, const char *host)
{
	struct store_cmd cmd = {.table = DEVICES_MANAGER, .op = STORE_PUT, .time_ms = 5};
	snprintf(STORE_CMD_ROW(&cmd, struct devices_manager)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct devices_manager)->host), "%s", host);
	put(st, &cmd);
}

/* s1 - s2 (s1 port 10 to s2 port 20); h1, the manager, on s1 port 2; the
 * device on s2 port 4 at 10.77.2.1. */
static struct store_state *lab(void)
{
	struct store_state *st;
	assert_int_equal(store_state_new(&st), 0);
	member(st, 1, "h1");
	member(st, 2, "h2");
	join(st, 1, 10, 2, 20);
	locate(st, "h1", 1, 2, 1);
	admit(st, "h1", STORE_PUT);
	device(st, 0x0a4d0201, 2, 4);
	manager(st, "h1");
	return st;
}

static bool same_mac(const struct of13_oxm *o, const uint8_t mac[6])
{
	return memcmp(o->value, mac, 6) == 0;
}

/* The flow of table @table at @prio, or NULL. */
static const struct of13_flow_mod *find(const struct sw_flows *f, uint8_t table, uint16_t prio)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->v[i].table_id == table && f->v[i].priority == prio)
			return &f->v[i];
	return NULL;
}

static uint64_t match(const struct of13_flow_mod *fm, enum of13_oxm_field field)
{
	uint64_t v = 0;
	assert_true(of13_match_get(&fm->match, field, &v, NULL));
	return v;
}

static const struct of13_action *action(const struct of13_flow_mod *fm, enum of13_action_type t)
{
	for (unsigned i = 0; i < fm->n_instructions; i++)
		for (unsigned k = 0; k < fm->instructions[i].n_actions; k++)
			if (fm->instructions[i].actions[k].type == t)
				return &fm->instructions[i].actions[k];
	return NULL;
}

static bool goes_to_table1(const struct of13_flow_mod *fm)
{
	for (unsigned i = 0; i < fm->n_instructions; i++)
		if (fm->instructions[i].type == OF13_INSTRUCTION_GOTO_TABLE &&
		    fm->instructions[i].table_id == 1)
			return true;
	return false;
}

static uint32_t output(const struct of13_flow_mod *fm)
{
	const struct of13_action *a = action(fm, OF13_ACTION_OUTPUT);
	assert_non_null(a);
	return a->output.port;
}

static void test_flows_at_the_device_and_the_manager(void **state)
{
	(void)state;
	struct store_state *st = lab();
	struct sw_flows s1 = {0}, s2 = {0};
	assert_int_equal(devices_flows(st, 1, &s1), 0);
	assert_int_equal(devices_flows(st, 2, &s2), 0);

	/* s2, the device's switch: its port and MAC enter table 1, its ARP
	 * copied to the master; its MAC anywhere else goes to the master. */
	const struct of13_flow_mod *fm = find(&s2, 0, DEV_PRIO_ADMIT);
	assert_non_null(fm);
	assert_int_equal(match(fm, OF13_OXM_IN_PORT), 4);
	assert_true(goes_to_table1(fm));
	assert_null(action(fm, OF13_ACTION_OUTPUT)); /* address known: not copied */
	fm = find(&s2, 0, DEV_PRIO_LEARN);
	assert_non_null(fm);
	assert_int_equal(match(fm, OF13_OXM_ETH_TYPE), 0x0806);
	assert_int_equal(output(fm), OF13_PORT_CONTROLLER);
	assert_false(goes_to_table1(fm)); /* ARP from a new address: learned first */
	fm = find(&s2, 0, DEV_PRIO_ARP_OWN);
	assert_non_null(fm);
	assert_int_equal(match(fm, OF13_OXM_ARP_SPA), 0x0a4d0201);
	assert_true(goes_to_table1(fm));
	assert_null(action(fm, OF13_ACTION_OUTPUT));
	fm = find(&s2, 0, DEV_PRIO_SEEN);
	assert_non_null(fm);
	assert_int_equal(fm->match.n, 1);
	assert_true(same_mac(&fm->match.oxm[0], dev_mac));
	assert_int_equal(output(fm), OF13_PORT_CONTROLLER);

	/* Table 1 of s2: from the device toward the manager (over the link),
	 * addressed to it; ARP for its address too; to it on port 4. */
	fm = find(&s2, 1, DEV_PRIO_FROM);
	assert_non_null(fm);
	assert_true(same_mac(&fm->match.oxm[0], dev_mac));
	assert_int_equal(fm->match.oxm[0].field, OF13_OXM_ETH_SRC);
	assert_int_equal(output(fm), 20);
	const struct of13_action *set = action(fm, OF13_ACTION_SET_FIELD);
	assert_non_null(set);
	assert_int_equal(set->set_field.field, OF13_OXM_ETH_DST);
	assert_memory_equal(set->set_field.value, h1_mac, 6);
	fm = find(&s2, 1, DEV_PRIO_ARP);
	assert_non_null(fm);
	assert_int_equal(match(fm, OF13_OXM_ARP_TPA), 0x0a4d0201);
	assert_int_equal(output(fm), 20);
	fm = find(&s2, 1, DEV_PRIO_TO);
	assert_non_null(fm);
	assert_int_equal(fm->match.oxm[0].field, OF13_OXM_ETH_DST);
	assert_int_equal(output(fm), 4);

	/* s1, the manager's: no admission for the device, which is not
	 * here; from it to h1's port, to it over the link. */
	assert_null(find(&s1, 0, DEV_PRIO_ADMIT));
	assert_null(find(&s1, 0, DEV_PRIO_LEARN));
	assert_non_null(find(&s1, 0, DEV_PRIO_SEEN));
	assert_int_equal(output(find(&s1, 1, DEV_PRIO_FROM)), 2);
	assert_int_equal(output(find(&s1, 1, DEV_PRIO_TO)), 10);
	sw_flows_free(&s1);
	sw_flows_free(&s2);
	store_state_free(st);
}

static void test_flows_without_address_manager_or_allowance(void **state)
{
	(void)state;
	struct store_state *st = lab();
	struct sw_flows f = {0};

	/* Address not known yet: all it sends at its port is copied to the
	 * master; no ARP is steered for it. */
	device(st, 0, 2, 4);
	assert_int_equal(devices_flows(st, 2, &f), 0);
	assert_int_equal(output(find(&f, 0, DEV_PRIO_ADMIT)), OF13_PORT_CONTROLLER);
	assert_true(goes_to_table1(find(&f, 0, DEV_PRIO_ADMIT)));
	assert_null(find(&f, 1, DEV_PRIO_ARP));
	assert_null(find(&f, 0, DEV_PRIO_ARP_OWN)); /* its ARP only teaches */
	assert_non_null(find(&f, 0, DEV_PRIO_LEARN));
	sw_flows_free(&f);

	/* Not located yet: only learning, and the way to the manager. */
	device(st, 0, 0, 0);
	assert_int_equal(devices_flows(st, 2, &f), 0);
	assert_null(find(&f, 0, DEV_PRIO_ADMIT));
	assert_null(find(&f, 1, DEV_PRIO_TO));
	assert_non_null(find(&f, 0, DEV_PRIO_SEEN));
	sw_flows_free(&f);

	/* The manager loses its admission: nothing gets the device past
	 * table 0 (table 1's miss would take it anywhere). */
	device(st, 0x0a4d0201, 2, 4);
	admit(st, "h1", STORE_DELETE);
	assert_null(devices_manager_location(st));
	assert_int_equal(devices_flows(st, 2, &f), 0);
	assert_int_equal(f.n, 1);
	assert_int_equal(f.v[0].priority, DEV_PRIO_SEEN);
	sw_flows_free(&f);

	/* Not allowed: no flow at all. */
	admit(st, "h1", STORE_PUT);
	struct store_cmd del = {.table = DEVICES_DEVICES, .op = STORE_DELETE, .time_ms = 9};
	snprintf(STORE_CMD_ROW(&del, struct devices_device)->mac,
	         sizeof(STORE_CMD_ROW(&del, struct devices_device)->mac), DEV_MAC);
	put(st, &del);
	assert_int_equal(devices_flows(st, 2, &f), 0);
	assert_int_equal(f.n, 0);
	sw_flows_free(&f);
	store_state_free(st);
}

/* ---- the manager ---- */

struct liveness {
	bool dead[8];
};

static bool alive(void *userdata, const struct store_member *m)
{
	return !((struct liveness *)userdata)->dead[m->id];
}

static void test_pick_manager(void **state)
{
	(void)state;
	struct store_state *st;
	struct liveness live = {0};
	assert_int_equal(store_state_new(&st), 0);
	member(st, 1, "h1");
	member(st, 2, "h2");
	member(st, 3, "h3");
	assert_null(devices_pick_manager(st, alive, &live));
	/* h1 is admitted but nowhere; h2 and h3 are fine: the lowest id. */
	admit(st, "h1", STORE_PUT);
	for (unsigned n = 2; n <= 3; n++) {
		char name[4];
		snprintf(name, sizeof(name), "h%u", n);
		locate(st, name, 1, n, n);
		admit(st, name, STORE_PUT);
	}
	assert_string_equal(devices_pick_manager(st, alive, &live)->name, "h2");
	/* The current manager stays while it is fine... */
	manager(st, "h3");
	assert_string_equal(devices_pick_manager(st, alive, &live)->name, "h3");
	/* ...and is replaced when it is gone or loses its admission. */
	live.dead[3] = true;
	assert_string_equal(devices_pick_manager(st, alive, &live)->name, "h2");
	live.dead[3] = false;
	admit(st, "h3", STORE_DELETE);
	assert_string_equal(devices_pick_manager(st, alive, &live)->name, "h2");
	live.dead[2] = true;
	assert_null(devices_pick_manager(st, alive, &live));
	store_state_free(st);
}

/* ---- learning ---- */

static size_t arp_frame(uint8_t *f, const uint8_t src[6], uint32_t spa)
{
	memset(f, 0, 42);
	memset(f, 0xff, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x08, f[13] = 0x06;
	uint8_t *p = f + 14;
	p[1] = 1, p[2] = 0x08, p[4] = 6, p[5] = 4, p[7] = 1;
	memcpy(p + 8, src, 6);
	p[14] = (uint8_t)(spa >> 24), p[15] = (uint8_t)(spa >> 16);
	p[16] = (uint8_t)(spa >> 8), p[17] = (uint8_t)spa;
	return 42;
}

static size_t ip_frame(uint8_t *f, const uint8_t src[6], uint32_t saddr)
{
	memset(f, 0, 34);
	memcpy(f + 6, src, 6);
	f[12] = 0x08;
	f[14] = 0x45;
	uint8_t *s = f + 14 + 12;
	s[0] = (uint8_t)(saddr >> 24), s[1] = (uint8_t)(saddr >> 16);
	s[2] = (uint8_t)(saddr >> 8), s[3] = (uint8_t)saddr;
	return 34;
}

static void test_learn(void **state)
{
	(void)state;
	struct store_state *st = lab();
	device(st, 0, 0, 0);
	uint8_t f[64];
	struct store_cmd cmd;

	/* An ARP probe (sender 0.0.0.0) tells where, not the address. */
	size_t n = arp_frame(f, dev_mac, 0);
	assert_true(devices_learn(st, 2, 4, f, n, 77, &cmd));
	assert_int_equal(cmd.table, DEVICES_DEVICES);
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->dpid, 2);
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->port, 4);
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->address, 0);
	assert_string_equal(STORE_CMD_ROW(&cmd, struct devices_device)->name, "printer");
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->allowed_ms, 5);
	put(st, &cmd);
	assert_false(devices_learn(st, 2, 4, f, n, 78, &cmd));

	n = arp_frame(f, dev_mac, 0x0a4d0201);
	assert_true(devices_learn(st, 2, 4, f, n, 79, &cmd));
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->address, 0x0a4d0201);
	put(st, &cmd);
	assert_false(devices_learn(st, 2, 4, f, n, 80, &cmd)); /* nothing new: no commit */

	/* It moved: an IPv4 packet from another port. */
	n = ip_frame(f, dev_mac, 0x0a4d0201);
	assert_true(devices_learn(st, 1, 7, f, n, 81, &cmd));
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->port, 7);
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->address, 0x0a4d0201);
	/* Multicast and broadcast sources are not addresses. */
	n = ip_frame(f, dev_mac, 0xffffffff);
	assert_true(devices_learn(st, 1, 7, f, n, 81, &cmd));
	assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->address, 0x0a4d0201);

	/* A MAC that is not allowed teaches nothing; short frames neither. */
	n = arp_frame(f, h1_mac, 0x0a4d0299);
	assert_false(devices_learn(st, 2, 4, f, n, 82, &cmd));
	n = arp_frame(f, dev_mac, 0x0a4d0299);
	for (size_t len = 0; len < 14; len++)
		assert_false(devices_learn(st, 2, 4, f, len, 83, &cmd));
	for (size_t len = 14; len < n; len++) {
		/* The place, but no address from a cut ARP. */
		assert_true(devices_learn(st, 2, 5, f, len, 83, &cmd));
		assert_int_equal(STORE_CMD_ROW(&cmd, struct devices_device)->address, 0x0a4d0201);
	}
	store_state_free(st);
}

static void test_datapath_view(void **state)
{
	(void)state;
	struct store_state *st = lab();
	struct devices_view v;
	assert_int_equal(devices_datapath(st, "h2", h1_mac, &v), 0);
	assert_false(v.enabled);
	assert_int_equal(v.n, 0);
	assert_int_equal(devices_datapath(st, "h1", h1_mac, &v), 0);
	assert_true(v.enabled);
	assert_memory_equal(v.own_mac, h1_mac, 6);
	assert_int_equal(v.n, 1);
	assert_memory_equal(v.v[0].mac, dev_mac, 6);
	char a[INET_ADDRSTRLEN];
	assert_string_equal(inet_ntop(AF_INET, &v.v[0].addr, a, sizeof(a)), "10.77.2.1");
	/* The same state gives the same bytes: the datapath reconciles only
	 * on a change. */
	struct devices_view again;
	assert_int_equal(devices_datapath(st, "h1", h1_mac, &again), 0);
	assert_int_equal(again.n, v.n);
	assert_memory_equal(again.v, v.v, v.n * sizeof(*v.v));
	devices_view_free(&v);
	devices_view_free(&again);
	store_state_free(st);
}

/* 100 devices, far past the 32 a manager once forwarded: each is steered,
 * routed on the link and forwarded. */
static void test_datapath_view_many(void **state)
{
	(void)state;
	struct store_state *st = lab();
	for (unsigned i = 0; i < 100; i++) {
		struct store_cmd cmd = {.table = DEVICES_DEVICES, .op = STORE_PUT, .time_ms = 5};
		struct devices_device *d = STORE_CMD_ROW(&cmd, struct devices_device);
		*d = (struct devices_device){
		    .address = 0x0a4d0300 + i, .dpid = 2, .port = 4, .allowed_ms = 5};
		snprintf(d->mac, sizeof(d->mac), "02:bb:00:00:00:%02x", i);
		snprintf(d->name, sizeof(d->name), "dev%u", i);
		put(st, &cmd);
	}
	struct devices_view v;
	assert_int_equal(devices_datapath(st, "h1", h1_mac, &v), 0);
	assert_int_equal(v.n, 101);

	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	inet_pton(AF_INET, "10.77.1.1", &cfg.guest_addr);
	inet_pton(AF_INET, "10.77.0.1", &cfg.control_addr);
	struct dp_fragment f = {0};
	assert_int_equal(devices_ruleset_build(&cfg, &v, &f), 0);
	assert_int_equal(f.n_links, 1);
	assert_int_equal(f.links[0].n_hosts, 101);
	const struct dp_fragment *frags[] = {&f};
	struct dp_ruleset rs;
	char *text;
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 1, &rs), 0);
	assert_int_equal(dp_ruleset_render_string(&rs, &text), 0);
	/* Steered: every MAC, in the ingress rule. */
	const char *steer = strstr(text, "ether saddr { ");
	assert_non_null(steer);
	assert_non_null(strstr(steer, "02:bb:00:00:00:00, 02:bb:00:00:00:01"));
	assert_non_null(strstr(steer, "02:bb:00:00:00:63 } fwd to \"dv0\""));
	/* Forwarded and checked against spoofing: every address, in each of
	 * the four rules that name them all. */
	size_t sets = 0;
	for (const char *p = strstr(text, "{ 10.77.2.1, 10.77.3.0, 10.77.3.1,"); p;
	     p = strstr(p + 1, "{ 10.77.2.1, 10.77.3.0, 10.77.3.1,"))
		sets++;
	assert_int_equal(sets, 4);
	assert_non_null(strstr(text, ", 10.77.3.98, 10.77.3.99 }"));
	free(text);
	dp_ruleset_free(&rs);
	dp_fragment_free(&f);
	devices_view_free(&v);
	store_state_free(st);
}

/* Members 1 and 257 (ids go to 65535) are told apart: one answering says
 * nothing of the other, past the grace a new leader gives everyone. */
static void test_heard_by_id(void **state)
{
	(void)state;
	struct devices_heard h = {0};
	assert_false(devices_heard_alive(&h, 1, 1000, 500)); /* never heard, no grace */
	h.grace_ms = 1000;
	assert_true(devices_heard_alive(&h, 1, 1499, 500));
	assert_true(devices_heard_alive(&h, 257, 1499, 500));
	for (uint64_t id = 1; id <= 300; id++)
		if (id != 1)
			devices_heard_note(&h, id, 1400);
	assert_int_equal(h.n, 299);
	assert_true(devices_heard_alive(&h, 257, 1899, 500));
	assert_true(devices_heard_alive(&h, 300, 1899, 500));
	assert_false(devices_heard_alive(&h, 1, 1899, 500));
	assert_false(devices_heard_alive(&h, 257, 1900, 500));
	devices_heard_note(&h, 1, 1900);
	assert_true(devices_heard_alive(&h, 1, 2399, 500));
	assert_int_equal(h.n, 300);
	devices_heard_free(&h);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flows_at_the_device_and_the_manager),
	    cmocka_unit_test(test_flows_without_address_manager_or_allowance),
	    cmocka_unit_test(test_pick_manager),
	    cmocka_unit_test(test_learn),
	    cmocka_unit_test(test_datapath_view),
	    cmocka_unit_test(test_datapath_view_many),
	    cmocka_unit_test(test_heard_by_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
