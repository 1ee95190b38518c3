/* The controller's pure parts: LLDP frames, the desired flows computed
 * from a store state, and the comparison with what a switch holds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/tls.h"
#include "switch/claim.h"
#include "switch/desired.h"
#include "switch/lldp.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "tables-all.h"

static void test_lldp_round_trip(void **state)
{
	(void)state;
	uint8_t frame[LLDP_FRAME_MAX];
	struct lldp_info probe = {.kind = LLDP_PROBE,
	                          .src_mac = {2, 0, 0, 0, 0, 1},
	                          .dpid = 0x1122334455667788ull,
	                          .port = 7};
	size_t len = lldp_encode(frame, sizeof(frame), &probe);
	assert_true(len > 14);
	struct lldp_info out;
	assert_int_equal(lldp_decode(frame, len, &out), 0);
	assert_int_equal(out.kind, LLDP_PROBE);
	assert_true(out.dpid == probe.dpid);
	assert_int_equal(out.port, 7);
	assert_memory_equal(out.src_mac, probe.src_mac, 6);

	struct lldp_info ann = {.kind = LLDP_ANNOUNCE,
	                        .src_mac = {2, 0, 0, 0, 0, 2},
	                        .control_addr = 0x0a4d0001,
	                        .guest_addr = 0x0a4d0101};
	strcpy(ann.host, "h1");
	len = lldp_encode(frame, sizeof(frame), &ann);
	assert_int_equal(lldp_decode(frame, len, &out), 0);
	assert_int_equal(out.kind, LLDP_ANNOUNCE);
	assert_string_equal(out.host, "h1");
	assert_int_equal(out.control_addr, 0x0a4d0001);
	assert_int_equal(out.guest_addr, 0x0a4d0101);

	/* Every truncation is refused, never over-read. */
	for (size_t n = 0; n < len - 2; n++)
		assert_int_equal(lldp_decode(frame, n, &out), -EBADMSG);
	/* Not LLDP. */
	frame[12] = 0x08;
	frame[13] = 0x00;
	assert_int_equal(lldp_decode(frame, len, &out), -EBADMSG);
}

static void test_lldp_foreign(void **state)
{
	(void)state;
	/* A minimal standard LLDPDU from some other device: chassis, port,
	 * TTL, end. Valid, but not ETTM's. */
	static const uint8_t frame[] = {
	    0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x02, 0, 0, 0, 0, 9,
	    0x88, 0xcc, 0x02, 0x07, 0x04, 0x02, 0,    0, 0, 0, 9, /* chassis: MAC */
	    0x04, 0x03, 0x07, 'p',  '1',                          /* port: local "p1" */
	    0x06, 0x02, 0x00, 0x78,                               /* TTL 120 */
	    0x00, 0x00,                                           /* end */
	};
	struct lldp_info out;
	assert_int_equal(lldp_decode(frame, sizeof(frame), &out), -ENOENT);
}

static struct ctl_tls *identity(char *dir, const char *name)
{
	strcpy(dir, "/tmp/ettm-test-lldp-XXXXXX");
	assert_non_null(mkdtemp(dir));
	struct ctl_tls *t = NULL;
	char *error = NULL;
	assert_int_equal(ctl_tls_open(dir, name, &t, &error), 0);
	return t;
}

static void rm_rf(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static struct lldp_info h3_announcement(void)
{
	struct lldp_info ann = {.kind = LLDP_ANNOUNCE,
	                        .src_mac = {2, 0, 0, 0, 0, 3},
	                        .control_addr = 0x0a4d0003,
	                        .guest_addr = 0x0a4d0103};
	strcpy(ann.host, "h3");
	return ann;
}

#define NOW_MS 1764640000000ull

/* A signed announcement and a probe with its token come back as they
 * went, and every truncation of them is refused. */
static void test_lldp_signed_round_trip(void **state)
{
	(void)state;
	char dir[64];
	struct ctl_tls *tls = identity(dir, "h3");
	struct lldp_info ann = h3_announcement(), out;
	ann.token = 0xabcdef0123456789ull;
	assert_int_equal(lldp_sign(&ann, tls, NOW_MS), 0);
	uint8_t frame[LLDP_FRAME_MAX];
	size_t len = lldp_encode(frame, sizeof(frame), &ann);
	assert_true(len > 14);
	assert_int_equal(lldp_decode(frame, len, &out), 0);
	assert_string_equal(out.host, "h3");
	assert_true(out.time_ms == NOW_MS);
	assert_true(out.token == ann.token);
	size_t spki_len;
	const uint8_t *spki = ctl_tls_spki(tls, &spki_len);
	assert_int_equal(out.spki_len, spki_len);
	assert_memory_equal(out.spki, spki, spki_len);
	assert_int_equal(out.sig_len, ann.sig_len);
	assert_memory_equal(out.sig, ann.sig, ann.sig_len);
	assert_int_equal(lldp_verify(&out, ctl_tls_fingerprint(tls), NOW_MS + 1000), 0);
	for (size_t n = 0; n < len - 2; n++)
		assert_int_equal(lldp_decode(frame, n, &out), -EBADMSG);

	struct lldp_info probe = {
	    .kind = LLDP_PROBE, .dpid = 0x1122334455667788ull, .port = 7, .token = 0xfeedull << 40};
	len = lldp_encode(frame, sizeof(frame), &probe);
	assert_int_equal(lldp_decode(frame, len, &out), 0);
	assert_true(out.token == probe.token);
	assert_int_equal(out.spki_len, 0);
	for (size_t n = 0; n < len - 2; n++)
		assert_int_equal(lldp_decode(frame, n, &out), -EBADMSG);
	ctl_tls_free(tls);
	rm_rf(dir);
}

/* @frame (@len bytes, ending in the end TLV) with one more ETTM TLV of
 * subtype @sub, @n bytes of @v, in front of its end; returns the new
 * length. */
static size_t with_org(uint8_t *frame, size_t len, uint8_t sub, const uint8_t *v, size_t n)
{
	size_t at = len - 2, tlen = 4 + n;
	frame[at++] = (uint8_t)(127 << 1 | tlen >> 8);
	frame[at++] = (uint8_t)tlen;
	memcpy(frame + at, (uint8_t[]){0x0a, 0xe7, 0x7d, sub}, 4);
	memcpy(frame + at + 4, v, n);
	at += 4 + n;
	frame[at++] = 0;
	frame[at++] = 0;
	return at;
}

/* Every ETTM TLV's length is checked: too short, too long, twice, or on
 * the wrong kind of frame is refused; a later version's subtype is
 * skipped. */
static void test_lldp_bad_tlvs(void **state)
{
	(void)state;
	static uint8_t zero[600];
	uint8_t base[LLDP_FRAME_MAX], frame[1024];
	struct lldp_info ann = h3_announcement(), out;
	size_t blen = lldp_encode(base, sizeof(base), &ann);
	struct {
		uint8_t sub;
		size_t n;
		int want;
	} cases[] = {
	    {3, 8, 0},                        /* the token of the probe it answers */
	    {3, 7, -EBADMSG},                 /* a short token */
	    {4, 0, -EBADMSG},                 /* an empty key */
	    {4, LLDP_SPKI_MAX + 1, -EBADMSG}, /* a key too long */
	    {4, 91, -EBADMSG},                /* a key without time and signature */
	    {5, 7, -EBADMSG},                 /* a short time */
	    {5, 9, -EBADMSG},                 /* a long time */
	    {6, LLDP_SIG_MAX + 1, -EBADMSG},  /* a signature too long */
	    {2, 8, -EBADMSG},                 /* the kind twice */
	    {1, 12, -EBADMSG},                /* both kinds */
	    {9, 40, 0},                       /* a later version's */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(frame, base, blen);
		size_t len = with_org(frame, blen, cases[i].sub, zero, cases[i].n);
		assert_int_equal(lldp_decode(frame, len, &out), cases[i].want);
	}
	/* A signature whole in form decodes (lldp_verify() is what judges it);
	 * one of its TLVs twice does not. */
	memcpy(frame, base, blen);
	size_t len = with_org(frame, blen, 4, zero, 91);
	len = with_org(frame, len, 5, zero, 8);
	len = with_org(frame, len, 6, zero, 70);
	assert_int_equal(lldp_decode(frame, len, &out), 0);
	assert_int_equal(lldp_decode(frame, with_org(frame, len, 6, zero, 70), &out), -EBADMSG);
	/* A TLV whose length runs past the frame. */
	memcpy(frame, base, blen);
	len = with_org(frame, blen, 4, zero, 100);
	assert_int_equal(lldp_decode(frame, len - 3, &out), -EBADMSG);
	/* A key on a probe. */
	struct lldp_info probe = {.kind = LLDP_PROBE, .dpid = 1, .port = 1, .token = 5};
	blen = lldp_encode(base, sizeof(base), &probe);
	memcpy(frame, base, blen);
	assert_int_equal(lldp_decode(frame, with_org(frame, blen, 4, zero, 91), &out), -EBADMSG);
	/* A signed announcement does not fit in a frame smaller than its own. */
	char dir[64];
	struct ctl_tls *tls = identity(dir, "h3");
	assert_int_equal(lldp_sign(&ann, tls, NOW_MS), 0);
	len = lldp_encode(frame, sizeof(frame), &ann);
	assert_true(len > 0 && len <= LLDP_FRAME_MAX);
	assert_int_equal(lldp_encode(frame, len - 1, &ann), 0);
	ctl_tls_free(tls);
	rm_rf(dir);
}

/* What the master refuses of an announcement for a host admitted with a
 * key: another key, any changed bit, a time more than 30 s off either way,
 * no signature at all. */
static void test_lldp_verify(void **state)
{
	(void)state;
	char dir[64], other_dir[64];
	struct ctl_tls *tls = identity(dir, "h3"), *other = identity(other_dir, "rogue");
	const char *fp = ctl_tls_fingerprint(tls);
	struct lldp_info good = h3_announcement(), bad;
	good.token = 0x5eed5eed5eedull; /* the probe it answers */
	assert_int_equal(lldp_verify(&good, fp, NOW_MS), -ENOKEY);
	assert_int_equal(lldp_sign(&good, tls, NOW_MS), 0);
	assert_int_equal(lldp_verify(&good, fp, NOW_MS), 0);
	assert_int_equal(lldp_verify(&good, fp, NOW_MS + LLDP_SKEW_MS), 0);
	assert_int_equal(lldp_verify(&good, fp, NOW_MS - LLDP_SKEW_MS), 0);
	assert_int_equal(lldp_verify(&good, fp, NOW_MS + LLDP_SKEW_MS + 1), -ETIME);
	assert_int_equal(lldp_verify(&good, fp, NOW_MS - LLDP_SKEW_MS - 1), -ETIME);

	/* Signed by a stranger with its own key. */
	bad = h3_announcement();
	assert_int_equal(lldp_sign(&bad, other, NOW_MS), 0);
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EKEYREJECTED);
	/* The host's key, the stranger's signature. */
	memcpy(bad.spki, good.spki, good.spki_len);
	bad.spki_len = good.spki_len;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	/* The signature copied to another port's MAC, address or time. */
	bad = good;
	bad.src_mac[5] ^= 1;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	bad = good;
	bad.guest_addr ^= 0x100;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	bad = good;
	bad.time_ms += 1;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	/* ... or to another probe's token: another port or round. */
	bad = good;
	bad.token ^= 1;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	bad.token = 0;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	/* Any flipped bit of the signature or the key. */
	for (size_t i = 0; i < good.sig_len * 8; i += 7) {
		bad = good;
		bad.sig[i / 8] ^= (uint8_t)(1 << i % 8);
		assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EBADMSG);
	}
	bad = good;
	bad.spki[good.spki_len - 1] ^= 1;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -EKEYREJECTED);
	/* The key without the signature. */
	bad = good;
	bad.sig_len = 0;
	assert_int_equal(lldp_verify(&bad, fp, NOW_MS), -ENOKEY);
	ctl_tls_free(tls);
	ctl_tls_free(other);
	rm_rf(dir);
	rm_rf(other_dir);
}

/* A probe counts with this round's token or the last one's, not an older
 * one, a guessed one or none. */
static void test_lldp_tokens(void **state)
{
	(void)state;
	struct lldp_tokens t = {0};
	assert_false(lldp_tokens_match(&t, 0));
	lldp_tokens_roll(&t, 111);
	assert_true(lldp_tokens_match(&t, 111));
	assert_false(lldp_tokens_match(&t, 0));
	lldp_tokens_roll(&t, 222);
	assert_true(lldp_tokens_match(&t, 111));
	assert_true(lldp_tokens_match(&t, 222));
	assert_false(lldp_tokens_match(&t, 333));
	lldp_tokens_roll(&t, 333);
	assert_false(lldp_tokens_match(&t, 111));
	assert_true(lldp_tokens_match(&t, 222));
	assert_true(lldp_tokens_match(&t, 333));
	assert_false(lldp_tokens_match(&t, 0));
}

static void put(struct store_state *st, const struct store_cmd *cmd)
{
	struct store_result res;
	assert_int_equal(store_state_apply(st, cmd, &res), 0);
	assert_true(res.applied);
}

static void locate(struct store_state *st, const char *host, uint64_t dpid, uint32_t port,
                   unsigned n, bool admit)
{
	struct store_cmd cmd = {.table = SWITCH_LOCATIONS, .op = STORE_PUT, .time_ms = 1};
	snprintf(STORE_CMD_ROW(&cmd, struct switch_location)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct switch_location)->host), "%s", host);
	snprintf(STORE_CMD_ROW(&cmd, struct switch_location)->mac,
	         sizeof(STORE_CMD_ROW(&cmd, struct switch_location)->mac), "02:00:00:00:00:%02x",
	         n);
	STORE_CMD_ROW(&cmd, struct switch_location)->dpid = dpid;
	STORE_CMD_ROW(&cmd, struct switch_location)->port = port;
	STORE_CMD_ROW(&cmd, struct switch_location)->control_addr = 0x0a4d0000 | n;
	STORE_CMD_ROW(&cmd, struct switch_location)->guest_addr = 0x0a4d0100 | n;
	put(st, &cmd);
	if (admit) {
		struct store_cmd a = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = 1};
		snprintf(STORE_CMD_ROW(&a, struct trust_admission)->host,
		         sizeof(STORE_CMD_ROW(&a, struct trust_admission)->host), "%s", host);
		put(st, &a);
	}
}

static void link(struct store_state *st, uint64_t a, uint32_t pa, uint64_t b, uint32_t pb)
{
	struct store_cmd cmd = {.table = SWITCH_LINKS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&cmd, struct switch_link)) = (struct switch_link){a, pa, b, pb, 1};
	put(st, &cmd);
	(*STORE_CMD_ROW(&cmd, struct switch_link)) = (struct switch_link){b, pb, a, pa, 1};
	put(st, &cmd);
}

static bool has_output(const struct of13_flow_mod *fm, uint32_t port)
{
	for (unsigned i = 0; i < fm->n_instructions; i++)
		for (unsigned k = 0; k < fm->instructions[i].n_actions; k++)
			if (fm->instructions[i].actions[k].type == OF13_ACTION_OUTPUT &&
			    fm->instructions[i].actions[k].output.port == port)
				return true;
	return false;
}

/* The forwarding flow for @mac_last (eth_dst=02:..:NN) on a switch. */
static const struct of13_flow_mod *to_mac(const struct sw_flows *f, unsigned n)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->v[i].table_id == 1 && f->v[i].match.n == 1 &&
		    f->v[i].match.oxm[0].field == OF13_OXM_ETH_DST &&
		    f->v[i].match.oxm[0].value[5] == n)
			return &f->v[i];
	return NULL;
}

static void test_desired_paths_and_admission(void **state)
{
	(void)state;
	struct store_state *st;
	assert_int_equal(store_state_new(&st), 0);
	/* s1 - s2 - s3 in a line; h1 on s1 port 2, h2 on s3 port 2, h3 on
	 * s3 port 3 but not admitted. */
	link(st, 1, 10, 2, 20);
	link(st, 2, 21, 3, 30);
	locate(st, "h1", 1, 2, 1, true);
	locate(st, "h2", 3, 2, 2, true);
	locate(st, "h3", 3, 3, 3, false);
	assert_int_equal(sw_next_hop(st, 1, 3), 10);
	assert_int_equal(sw_next_hop(st, 3, 1), 30);
	assert_int_equal(sw_next_hop(st, 2, 1), 20);
	assert_int_equal(sw_next_hop(st, 1, 9), 0);

	struct sw_port_ref uplink = {1, 5};
	struct sw_flows s1, s3;
	assert_int_equal(sw_desired(st, &uplink, 1, NULL, 1, &s1), 0);
	assert_int_equal(sw_desired(st, &uplink, 1, NULL, 3, &s3), 0);
	/* On s1: h1 locally on port 2, h2 via the link port 10; h3 nowhere. */
	assert_non_null(to_mac(&s1, 1));
	assert_true(has_output(to_mac(&s1, 1), 2));
	assert_true(has_output(to_mac(&s1, 2), 10));
	assert_null(to_mac(&s1, 3));
	assert_true(has_output(to_mac(&s3, 1), 30));
	/* Admission: s1 lets in h1's port (with its MAC), the link and the
	 * uplink; s3 lets in h2's port but not h3's. */
	unsigned admits1 = 0, admits3 = 0;
	for (size_t i = 0; i < s1.n; i++)
		admits1 += s1.v[i].table_id == 0;
	for (size_t i = 0; i < s3.n; i++) {
		uint64_t port;
		if (s3.v[i].table_id != 0)
			continue;
		admits3++;
		assert_true(of13_match_get(&s3.v[i].match, OF13_OXM_IN_PORT, &port, NULL));
		assert_int_not_equal(port, 3);
	}
	assert_int_equal(admits1, 3);
	assert_int_equal(admits3, 2);

	/* The diff of a set against itself is empty; against a changed
	 * switch it adds what is missing and deletes what is extra. */
	struct sw_diff d;
	assert_int_equal(sw_diff(&s1, &s1, &d), 0);
	assert_int_equal(d.n_add + d.n_del, 0);
	sw_diff_free(&d);
	struct sw_flows installed = {0};
	for (size_t i = 1; i < s1.n; i++)
		sw_flows_add(&installed, &s1.v[i]);
	for (size_t i = 0; i < s3.n; i++)
		if (s3.v[i].table_id == 0) {
			/* h2's admission belongs to another switch. */
			sw_flows_add(&installed, &s3.v[i]);
			break;
		}
	assert_int_equal(sw_diff(&s1, &installed, &d), 0);
	assert_int_equal(d.n_add, 1);
	assert_true(sw_flow_equal(d.add[0], &s1.v[0]));
	assert_int_equal(d.n_del, 1);
	sw_diff_free(&d);

	/* Fields in another order are the same flow. */
	struct of13_flow_mod swapped = *to_mac(&s1, 1);
	for (size_t i = 0; i < s1.n; i++) {
		if (s1.v[i].match.n < 2)
			continue;
		swapped = s1.v[i];
		struct of13_oxm t = swapped.match.oxm[0];
		swapped.match.oxm[0] = swapped.match.oxm[1];
		swapped.match.oxm[1] = t;
		assert_false(sw_flow_same_key(&swapped, &s1.v[i]));
		sw_flow_canonical(&swapped);
		assert_true(sw_flow_equal(&swapped, &s1.v[i]));
		break;
	}
	sw_flows_free(&installed);
	sw_flows_free(&s1);
	sw_flows_free(&s3);
	store_state_free(st);
}

/* ---- the claim rule (claim.h) ---- */

/* Open vSwitch's test: (int64_t)(id - cached) < 0 is stale. */
static void test_claim_signed_comparison(void **state)
{
	(void)state;
	assert_true(sw_claim_behind(5, 6));
	assert_false(sw_claim_behind(6, 5));
	assert_false(sw_claim_behind(7, 7));
	assert_true(sw_claim_behind(0, 1ull << 63));
	/* Exactly half the circle apart: each is stale to the other. */
	assert_true(sw_claim_behind(1ull << 63, 0));
	/* Wrap-around: 1 comes after UINT64_MAX. */
	assert_false(sw_claim_behind(1, UINT64_MAX));
	assert_true(sw_claim_behind(UINT64_MAX, 1));
	/* Generations rank before terms. */
	assert_true(sw_claim_behind(sw_generation_id(1, 0xffffffffu), sw_generation_id(2, 1)));
	assert_false(sw_claim_behind(sw_generation_id(2, 1), sw_generation_id(1, 0xffffffffu)));
}

/* Runs @plan's claims against a switch that has seen @seen, as Open
 * vSwitch would: each must be accepted; returns what it remembers. */
static uint64_t switch_after(uint64_t seen, const uint64_t *ids, size_t n)
{
	uint64_t max = seen;
	for (size_t i = 0; i < n; i++) {
		assert_false(sw_claim_behind(ids[i], max));
		max = ids[i];
	}
	return max;
}

static void test_claim_plan_ours(void **state)
{
	(void)state;
	uint64_t ours = sw_generation_id(1, 3), ids[2];
	size_t n;
	uint64_t behind[] = {0, sw_generation_id(1, 2), ours, sw_generation_id(0, 9), UINT64_MAX};
	for (size_t i = 0; i < sizeof(behind) / sizeof(behind[0]); i++) {
		assert_int_equal(sw_claim_plan(ours, behind[i], ids, &n), SW_CLAIM_OURS);
		assert_int_equal(n, 1);
		assert_true(ids[0] == ours);
		assert_true(switch_after(behind[i], ids, n) == ours);
	}
}

/* Ahead of ours by a later term of our generation, or by a newer
 * generation: this agent is the stale one and claims nothing. */
static void test_claim_plan_newer(void **state)
{
	(void)state;
	uint64_t ours = sw_generation_id(1, 3), ids[2];
	size_t n = 9;
	uint64_t newer[] = {sw_generation_id(1, 4), sw_generation_id(2, 1),
	                    sw_generation_id(1 + SW_CLAIM_GENERATIONS_AHEAD, 3)};
	for (size_t i = 0; i < sizeof(newer) / sizeof(newer[0]); i++) {
		assert_int_equal(sw_claim_plan(ours, newer[i], ids, &n), SW_CLAIM_NEWER);
		assert_int_equal(n, 0);
	}
	/* A returning voter of an older generation, whatever its term, never
	 * takes the switch from the newer generation's leader. */
	assert_int_equal(
	    sw_claim_plan(sw_generation_id(1, 0xffffffffu), sw_generation_id(2, 1), ids, &n),
	    SW_CLAIM_NEWER);
	/* Across the wrap: generation 0xffffffff's successor is 0. */
	assert_int_equal(
	    sw_claim_plan(sw_generation_id(0xffffffffu, 7), sw_generation_id(0, 1), ids, &n),
	    SW_CLAIM_NEWER);
}

/* An id no cluster issued ahead of ours: two claims bring the switch back
 * to ours; then an older generation is stale again. */
static void test_claim_plan_foreign(void **state)
{
	(void)state;
	uint64_t ours = sw_generation_id(2, 5), ids[2];
	size_t n;
	uint64_t foreign[] = {
	    1ull << 63,                    /* the id of the attack */
	    ours + (1ull << 63),           /* exactly half round: stale both ways */
	    ours + SW_CLAIM_AHEAD_MAX + 1, /* just past a newer generation */
	    ours + (1ull << 62),
	};
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		assert_true(sw_claim_behind(ours, foreign[i]));
		assert_int_equal(sw_claim_plan(ours, foreign[i], ids, &n), SW_CLAIM_FOREIGN);
		assert_int_equal(n, 2);
		assert_true(ids[1] == ours);
		assert_true(switch_after(foreign[i], ids, n) == ours);
		uint64_t old[2];
		size_t n_old;
		assert_int_equal(sw_claim_plan(sw_generation_id(1, 0xffffffffu), ours, old, &n_old),
		                 SW_CLAIM_NEWER);
	}
	/* Wrap-around: ours near the top of the circle, the foreign id past 0. */
	uint64_t high = sw_generation_id(0xfffffff0u, 1), wrapped = high + (3ull << 61);
	assert_true(wrapped < high);
	assert_int_equal(sw_claim_plan(high, wrapped, ids, &n), SW_CLAIM_FOREIGN);
	assert_true(switch_after(wrapped, ids, n) == high);
}

static void test_claim_backoff(void **state)
{
	(void)state;
	unsigned want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
	unsigned ms = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ms = sw_claim_backoff(ms);
		assert_int_equal(ms, want[i]);
	}
}

/* The start-up flows, as the lab installs them (docs/switch.md). */
static void test_startup_flows(void **state)
{
	(void)state;
	struct sw_flows f = {0};
	assert_int_equal(sw_startup_flows(&f), 0);
	assert_int_equal(f.n, 6);
	for (size_t i = 0; i < f.n; i++) {
		assert_true(f.v[i].cookie == SW_STARTUP_COOKIE);
		assert_true(f.v[i].flags & OF13_FF_SEND_FLOW_REM);
		assert_int_equal(f.v[i].table_id, 0);
		assert_true(sw_cookie_owned(f.v[i].cookie));
	}
	assert_int_equal(f.v[0].priority, SW_PRIO_STARTUP_LLDP);
	assert_true(f.v[0].instructions[0].actions[0].output.port == OF13_PORT_CONTROLLER);
	assert_true(sw_cookie_owned(SW_COOKIE | 7));
	assert_false(sw_cookie_owned(0x1ab0000000000001ull));
	assert_false(sw_cookie_owned(SW_STARTUP_COOKIE + 1));
	sw_flows_free(&f);
}

/* The first table-0 flow of @priority that matches @field = @value; NULL
 * when none. */
static const struct of13_flow_mod *control_flow(const struct sw_flows *f, uint16_t priority,
                                                enum of13_oxm_field field, uint64_t value)
{
	for (size_t i = 0; i < f->n; i++) {
		uint64_t v;
		if (f->v[i].table_id == 0 && f->v[i].priority == priority &&
		    of13_match_get(&f->v[i].match, field, &v, NULL) && v == value)
			return &f->v[i];
	}
	return NULL;
}

static void member(struct store_state *st, uint64_t id, uint8_t role)
{
	struct store_cmd m = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = 1};
	struct store_member *row = STORE_CMD_ROW(&m, struct store_member);
	row->id = id;
	row->role = role;
	snprintf(row->name, sizeof(row->name), "h%u", (unsigned)id);
	snprintf(row->raft_version, sizeof(row->raft_version), "test");
	snprintf(row->address, sizeof(row->address), "10.77.0.%u:7700", (unsigned)id);
	snprintf(row->peer, sizeof(row->peer), "10.77.0.%u:7701", (unsigned)id);
	put(st, &m);
}

static size_t count_priority(const struct sw_flows *f, uint16_t priority)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n; i++)
		n += f->v[i].table_id == 0 && f->v[i].priority == priority;
	return n;
}

/* The control plane closed on the switches: an agent's address only from
 * its port, nothing to the agents or the switches from a port no agent
 * sits on, an agent not admitted only its control traffic; and none of it
 * before the links join every switch. */
static void test_desired_control_closed(void **state)
{
	(void)state;
	struct store_state *st;
	assert_int_equal(store_state_new(&st), 0);
	/* h1 on s1 port 2 (admitted), h2 on s2 port 2 (admitted), h3 on s1
	 * port 3 (a member, not admitted); the s1-s2 link not found yet. */
	for (unsigned i = 1; i <= 3; i++)
		member(st, i, STORE_ROLE_VOTER);
	locate(st, "h1", 1, 2, 1, true);
	locate(st, "h2", 2, 2, 2, true);
	locate(st, "h3", 1, 3, 3, false);
	const uint32_t switches[] = {0x0a4dff01, 0x0a4dff02};
	struct sw_control control = {
	    .switch_addrs = switches, .n_switch_addrs = 2, .n_switches = 2};
	struct sw_flows s1;
	assert_int_equal(sw_desired(st, NULL, 0, &control, 1, &s1), 0);
	/* The switch's own port enters table 1. */
	assert_non_null(control_flow(&s1, SW_PRIO_ADMIT, OF13_OXM_IN_PORT, OF13_PORT_LOCAL));
	/* h1's and h3's addresses are s1's to guard; h2's way is not known. */
	assert_non_null(control_flow(&s1, SW_PRIO_CONTROL_SPOOF, OF13_OXM_IPV4_SRC, 0x0a4d0001));
	assert_non_null(control_flow(&s1, SW_PRIO_CONTROL_SPOOF, OF13_OXM_ARP_SPA, 0x0a4d0003));
	assert_null(control_flow(&s1, SW_PRIO_CONTROL_SPOOF, OF13_OXM_IPV4_SRC, 0x0a4d0002));
	/* Not closed yet: the link to s2 may be any of s1's ports. */
	assert_int_equal(count_priority(&s1, SW_PRIO_CONTROL_CLOSED), 0);
	/* h3, not admitted: ARP from its address, IPv4 from it to h1, h2 and
	 * both switches, from its port and MAC, and nothing else. */
	assert_int_equal(count_priority(&s1, SW_PRIO_CONTROL_AGENT), 1 + 4);
	const struct of13_flow_mod *to_h1 =
	    control_flow(&s1, SW_PRIO_CONTROL_AGENT, OF13_OXM_IPV4_DST, 0x0a4d0001);
	assert_non_null(to_h1);
	uint64_t v;
	assert_true(of13_match_get(&to_h1->match, OF13_OXM_IN_PORT, &v, NULL) && v == 3);
	assert_true(of13_match_get(&to_h1->match, OF13_OXM_IPV4_SRC, &v, NULL) && v == 0x0a4d0003);
	assert_true(has_output(to_h1, OF13_PORT_NORMAL));
	sw_flows_free(&s1);

	/* The link found, but a voter of the store has no place yet: still
	 * open, or the master could be cut off from the switch. */
	link(st, 1, 10, 2, 20);
	member(st, 4, STORE_ROLE_VOTER);
	assert_int_equal(sw_desired(st, NULL, 0, &control, 1, &s1), 0);
	assert_int_equal(count_priority(&s1, SW_PRIO_CONTROL_CLOSED), 0);
	sw_flows_free(&s1);
	/* It has one: every agent's and switch's address closed to the ports
	 * no agent sits on, h2's guarded too. */
	locate(st, "h4", 2, 3, 4, true);
	assert_int_equal(sw_desired(st, NULL, 0, &control, 1, &s1), 0);
	assert_non_null(control_flow(&s1, SW_PRIO_CONTROL_SPOOF, OF13_OXM_IPV4_SRC, 0x0a4d0002));
	assert_int_equal(count_priority(&s1, SW_PRIO_CONTROL_CLOSED), 2 * (4 + 2));
	const struct of13_flow_mod *closed =
	    control_flow(&s1, SW_PRIO_CONTROL_CLOSED, OF13_OXM_IPV4_DST, 0x0a4dff01);
	assert_non_null(closed);
	assert_int_equal(closed->n_instructions, 0); /* a drop */
	assert_non_null(control_flow(&s1, SW_PRIO_CONTROL_CLOSED, OF13_OXM_ARP_TPA, 0x0a4d0002));
	/* The link's port itself is admitted above them. */
	assert_non_null(control_flow(&s1, SW_PRIO_ADMIT, OF13_OXM_IN_PORT, 10));
	/* h5, on s1 port 6, announced itself but is no member yet: from its
	 * port only ARP and the members' peer APIs, where it joins. */
	locate(st, "h5", 1, 6, 5, false);
	sw_flows_free(&s1);
	assert_int_equal(sw_desired(st, NULL, 0, &control, 1, &s1), 0);
	size_t from_h5 = 0;
	for (size_t i = 0; i < s1.n; i++) {
		uint64_t port;
		if (s1.v[i].priority != SW_PRIO_CONTROL_AGENT ||
		    !of13_match_get(&s1.v[i].match, OF13_OXM_IN_PORT, &port, NULL) || port != 6)
			continue;
		from_h5++;
		if (of13_match_get(&s1.v[i].match, OF13_OXM_IPV4_DST, &v, NULL)) {
			assert_true(v >= 0x0a4d0001 && v <= 0x0a4d0004);
			assert_true(of13_match_get(&s1.v[i].match, OF13_OXM_TCP_DST, &v, NULL));
			assert_int_equal(v, 7701);
		}
	}
	assert_int_equal(from_h5, 1 + 4);
	/* h3 admitted: its port is admitted, it needs no flows of its own. */
	struct store_cmd a = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = 1};
	snprintf(STORE_CMD_ROW(&a, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&a, struct trust_admission)->host), "h3");
	put(st, &a);
	sw_flows_free(&s1);
	assert_int_equal(sw_desired(st, NULL, 0, &control, 1, &s1), 0);
	assert_int_equal(count_priority(&s1, SW_PRIO_CONTROL_AGENT), 1 + 4); /* h5's */
	sw_flows_free(&s1);
	/* Without a control plane to close (NULL), none of it. */
	assert_int_equal(sw_desired(st, NULL, 0, NULL, 1, &s1), 0);
	assert_int_equal(count_priority(&s1, SW_PRIO_CONTROL_CLOSED) +
	                     count_priority(&s1, SW_PRIO_CONTROL_SPOOF),
	                 0);
	sw_flows_free(&s1);
	store_state_free(st);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lldp_round_trip),
	    cmocka_unit_test(test_lldp_foreign),
	    cmocka_unit_test(test_lldp_signed_round_trip),
	    cmocka_unit_test(test_lldp_bad_tlvs),
	    cmocka_unit_test(test_lldp_verify),
	    cmocka_unit_test(test_lldp_tokens),
	    cmocka_unit_test(test_desired_paths_and_admission),
	    cmocka_unit_test(test_claim_signed_comparison),
	    cmocka_unit_test(test_claim_plan_ours),
	    cmocka_unit_test(test_claim_plan_newer),
	    cmocka_unit_test(test_claim_plan_foreign),
	    cmocka_unit_test(test_claim_backoff),
	    cmocka_unit_test(test_startup_flows),
	    cmocka_unit_test(test_desired_control_closed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
