/* The store's typed tables: encodings, apply and its rejections, snapshots,
 * dumps and merge rules, table by table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/tables.h"
#include "services/devices/tables.h"
#include "services/labels/labels.h"
#include "services/nat/tables.h"
#include "trust/tables.h"
#include "tables-all.h"

static struct store_cmd put(unsigned t)
{
	return (struct store_cmd){.table = (uint8_t)t, .op = STORE_PUT, .time_ms = 1000};
}

static struct store_cmd del(unsigned t)
{
	return (struct store_cmd){.table = (uint8_t)t, .op = STORE_DELETE, .time_ms = 1000};
}

static struct store_cmd member(uint64_t id, const char *name, const char *address)
{
	struct store_cmd c = put(STORE_MEMBERS);
	(*STORE_CMD_ROW(&c, struct store_member)) =
	    (struct store_member){.id = id, .role = STORE_ROLE_STANDBY, .joined_ms = 7};
	snprintf(STORE_CMD_ROW(&c, struct store_member)->name,
	         sizeof(STORE_CMD_ROW(&c, struct store_member)->name), "%s", name);
	snprintf(STORE_CMD_ROW(&c, struct store_member)->address,
	         sizeof(STORE_CMD_ROW(&c, struct store_member)->address), "%s", address);
	snprintf(STORE_CMD_ROW(&c, struct store_member)->peer,
	         sizeof(STORE_CMD_ROW(&c, struct store_member)->peer), "%s:7701", name);
	snprintf(STORE_CMD_ROW(&c, struct store_member)->raft_version,
	         sizeof(STORE_CMD_ROW(&c, struct store_member)->raft_version), "libraft 0.15.0");
	return c;
}

static struct store_cmd trusted(char c, enum store_op op)
{
	struct store_cmd cmd = op == STORE_PUT ? put(TRUST_TRUSTED) : del(TRUST_TRUSTED);
	memset(STORE_CMD_ROW(&cmd, struct trust_trusted)->digest, c, 64);
	snprintf(STORE_CMD_ROW(&cmd, struct trust_trusted)->note,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_trusted)->note), "note %c", c);
	return cmd;
}

static struct store_cmd block(uint16_t start, uint16_t size, uint64_t owner, enum store_op op)
{
	struct store_cmd c = op == STORE_PUT ? put(NAT_BLOCKS) : del(NAT_BLOCKS);
	(*STORE_CMD_ROW(&c, struct nat_block)) =
	    (struct nat_block){.start = start, .size = size, .owner = owner};
	return c;
}

static struct store_cmd mapping(uint16_t port, uint64_t owner, enum store_op op)
{
	struct store_cmd c = op == STORE_PUT ? put(NAT_MAPPINGS) : del(NAT_MAPPINGS);
	(*STORE_CMD_ROW(&c, struct nat_mapping)) = (struct nat_mapping){.proto = 6,
	                                                                .public_port = port,
	                                                                .owner = owner,
	                                                                .guest_addr = 0x0a4d0101,
	                                                                .guest_port = 80,
	                                                                .expires_ms = 5000};
	return c;
}

static struct store_cmd lease(const char *mac, uint32_t addr, uint64_t expires, uint64_t now)
{
	struct store_cmd c = put(STORE_LEASES);
	c.time_ms = now;
	snprintf(STORE_CMD_ROW(&c, struct store_lease)->mac,
	         sizeof(STORE_CMD_ROW(&c, struct store_lease)->mac), "%s", mac);
	STORE_CMD_ROW(&c, struct store_lease)->addr = addr;
	snprintf(STORE_CMD_ROW(&c, struct store_lease)->host,
	         sizeof(STORE_CMD_ROW(&c, struct store_lease)->host), "h1");
	STORE_CMD_ROW(&c, struct store_lease)->expires_ms = expires;
	return c;
}

static struct store_cmd policy(uint64_t epoch, const char *text)
{
	struct store_cmd c = put(STORE_POLICY);
	STORE_CMD_ROW(&c, struct store_policy)->epoch = epoch;
	STORE_CMD_ROW(&c, struct store_policy)->text = (char *)text;
	return c;
}

static struct store_cmd activate(uint64_t epoch)
{
	struct store_cmd c = put(STORE_POLICY_EPOCHS);
	STORE_CMD_ROW(&c, struct store_policy_epochs)->pending = epoch;
	return c;
}

static struct store_cmd ack(const char *host, uint64_t epoch)
{
	struct store_cmd c = put(STORE_POLICY_ACKS);
	snprintf(STORE_CMD_ROW(&c, struct store_policy_ack)->host,
	         sizeof(STORE_CMD_ROW(&c, struct store_policy_ack)->host), "%s", host);
	STORE_CMD_ROW(&c, struct store_policy_ack)->epoch = epoch;
	return c;
}

static struct store_cmd admission(const char *host, uint64_t time)
{
	struct store_cmd c = put(TRUST_ADMISSIONS);
	c.time_ms = time;
	snprintf(STORE_CMD_ROW(&c, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&c, struct trust_admission)->host), "%s", host);
	memset(STORE_CMD_ROW(&c, struct trust_admission)->measurement, 'e', 64);
	snprintf(STORE_CMD_ROW(&c, struct trust_admission)->mac,
	         sizeof(STORE_CMD_ROW(&c, struct trust_admission)->mac), "02:00:00:00:00:01");
	STORE_CMD_ROW(&c, struct trust_admission)->dpid = 1;
	STORE_CMD_ROW(&c, struct trust_admission)->port = 3;
	STORE_CMD_ROW(&c, struct trust_admission)->time_ms = time;
	return c;
}

static struct store_cmd attestation(const char *host, enum trust_attest_state state, uint64_t time)
{
	struct store_cmd c = put(TRUST_ATTESTATIONS);
	c.time_ms = time;
	struct trust_attestation *a = STORE_CMD_ROW(&c, struct trust_attestation);
	snprintf(a->host, sizeof(a->host), "%s", host);
	a->state = (uint8_t)state;
	snprintf(a->reason, sizeof(a->reason), "%s", state == TRUST_ATTEST_REFUSED ? "why" : "");
	memset(a->ek_fp, 'f', 64);
	memset(a->measurement, 'e', 64);
	a->reset_count = 3;
	a->restart_count = 1;
	a->time_ms = time;
	return c;
}

static struct store_cmd generation(uint64_t g)
{
	struct store_cmd c = put(STORE_CLUSTER);
	(*STORE_CMD_ROW(&c, struct store_cluster)) =
	    (struct store_cluster){.generation = g, .from_term = 2, .from_index = 30};
	snprintf(STORE_CMD_ROW(&c, struct store_cluster)->by,
	         sizeof(STORE_CMD_ROW(&c, struct store_cluster)->by), "h4");
	return c;
}

static struct store_cmd conflict(const char *reason)
{
	struct store_cmd c = put(STORE_CONFLICTS);
	STORE_CMD_ROW(&c, struct store_conflict)->table = STORE_POLICY;
	STORE_CMD_ROW(&c, struct store_conflict)->generation = 1;
	snprintf(STORE_CMD_ROW(&c, struct store_conflict)->reason,
	         sizeof(STORE_CMD_ROW(&c, struct store_conflict)->reason), "%s", reason);
	return c;
}

static struct store_cmd device(const char *mac, const char *name, uint32_t address,
                               uint64_t allowed)
{
	struct store_cmd c = put(DEVICES_DEVICES);
	snprintf(STORE_CMD_ROW(&c, struct devices_device)->mac,
	         sizeof(STORE_CMD_ROW(&c, struct devices_device)->mac), "%s", mac);
	snprintf(STORE_CMD_ROW(&c, struct devices_device)->name,
	         sizeof(STORE_CMD_ROW(&c, struct devices_device)->name), "%s", name);
	STORE_CMD_ROW(&c, struct devices_device)->address = address;
	STORE_CMD_ROW(&c, struct devices_device)->dpid = address ? 1 : 0;
	STORE_CMD_ROW(&c, struct devices_device)->port = address ? 7 : 0;
	STORE_CMD_ROW(&c, struct devices_device)->allowed_ms = allowed;
	return c;
}

static struct store_cmd manager(const char *host)
{
	struct store_cmd c = put(DEVICES_MANAGER);
	snprintf(STORE_CMD_ROW(&c, struct devices_manager)->host,
	         sizeof(STORE_CMD_ROW(&c, struct devices_manager)->host), "%s", host);
	STORE_CMD_ROW(&c, struct devices_manager)->since_ms = 1000;
	return c;
}

/* Expects *@error to be @expected, and frees it. */
static void assert_error(char **error, const char *expected)
{
	assert_non_null(*error);
	assert_string_equal(*error, expected);
	free(*error);
	*error = NULL;
}

/* Applies through the encoding, as a replica does. */
static struct store_result apply(struct store_state *s, const struct store_cmd *cmd)
{
	uint8_t *data;
	size_t len;
	struct store_result res;
	char *error = NULL;
	assert_int_equal(store_cmd_encode(cmd, &data, &len), 0);
	assert_int_equal(store_state_apply_encoded(s, data, len, &res, &error), 0);
	free(data);
	return res;
}

static void snapshot(const struct store_state *s, uint8_t **data, size_t *len)
{
	assert_int_equal(store_state_snapshot(s, data, len), 0);
}

/* Applies @cmd and expects a rejection with @reason that leaves the state
 * byte for byte as it was. */
static void assert_rejected(struct store_state *s, const struct store_cmd *cmd, const char *reason)
{
	uint8_t *before, *after;
	size_t before_len, after_len;
	snapshot(s, &before, &before_len);
	struct store_result r = apply(s, cmd);
	if (r.applied)
		fail_msg("applied, expected a rejection: %s", reason);
	assert_string_equal(r.reason, reason);
	snapshot(s, &after, &after_len);
	assert_int_equal(before_len, after_len);
	assert_memory_equal(before, after, before_len);
	free(before);
	free(after);
}

static void assert_applied(struct store_state *s, const struct store_cmd *cmd)
{
	struct store_result r = apply(s, cmd);
	if (!r.applied)
		fail_msg("rejected: %s", r.reason);
}

static struct store_state *new_state(void)
{
	struct store_state *s;
	assert_int_equal(store_state_new(&s), 0);
	return s;
}

/* ---- encodings ---- */

static void round_trip(const struct store_cmd *cmd)
{
	uint8_t *a, *b;
	size_t alen, blen;
	struct store_cmd back;
	char *error = NULL;
	assert_int_equal(store_cmd_encode(cmd, &a, &alen), 0);
	assert_int_equal(store_cmd_decode(a, alen, &back, &error), 0);
	assert_int_equal(back.table, cmd->table);
	assert_int_equal(back.op, cmd->op);
	assert_int_equal(back.time_ms, cmd->time_ms);
	assert_int_equal(store_cmd_encode(&back, &b, &blen), 0);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	/* Zero padding to 8 bytes, as in the Raft log, decodes the same. */
	uint8_t *padded = calloc(1, alen + 7);
	memcpy(padded, a, alen);
	struct store_cmd again;
	assert_int_equal(store_cmd_decode(padded, alen + 7, &again, &error), 0);
	store_cmd_done(&again);
	free(padded);
	store_cmd_done(&back);
	free(a);
	free(b);
}

static void test_every_table_round_trips(void **state)
{
	(void)state;
	struct store_cmd cmds[] = {
	    generation(2),
	    member(3, "h3", "10.77.0.3:7700"),
	    admission("h1", 5),
	    trusted('a', STORE_PUT),
	    trusted('a', STORE_DELETE),
	    policy(4, "allow h1 -> internet\n"),
	    block(2048, 256, 3, STORE_PUT),
	    block(2048, 256, 3, STORE_DELETE),
	    mapping(8080, 2, STORE_PUT),
	    lease("02:00:00:00:00:09", 0x0a4d0209, 99, 1),
	    conflict("a policy edit"),
	    attestation("h2", TRUST_ATTEST_REFUSED, 8),
	    device("02:aa:00:00:00:01", "printer", 0x0a4d0201, 5),
	    device("02:aa:00:00:00:01", "printer", 0, 0),
	    manager("h2"),
	    activate(7),
	    ack("h3", 7),
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		round_trip(&cmds[i]);
}

static void test_decode_rejects_bad_bytes(void **state)
{
	(void)state;
	struct store_cmd cmd = member(3, "h3", "10.77.0.3:7700"), out;
	uint8_t *data;
	size_t len;
	char *error = NULL;
	assert_int_equal(store_cmd_encode(&cmd, &data, &len), 0);
	struct {
		size_t offset;
		uint8_t value;
		const char *error;
	} flips[] = {
	    {0, 0x00, "command header: bad magic"},
	    {2, 0x09, "command header: unknown encoding version"},
	    {3, 0x7f, "command header: unknown table"},
	    {4, 0x03, "command header: unknown operation"},
	};
	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		uint8_t saved = data[flips[i].offset];
		data[flips[i].offset] = flips[i].value;
		assert_int_equal(store_cmd_decode(data, len, &out, &error), -EBADMSG);
		assert_error(&error, flips[i].error);
		data[flips[i].offset] = saved;
	}
	assert_int_equal(store_cmd_decode(data, 5, &out, &error), -EBADMSG);
	assert_error(&error, "command header: truncated");
	for (size_t cut = 13; cut < len; cut++) {
		assert_int_equal(store_cmd_decode(data, cut, &out, &error), -EBADMSG);
		assert_error(&error, "command for table members: truncated or malformed row");
	}
	uint8_t *longer = calloc(1, len + 8);
	memcpy(longer, data, len);
	longer[len] = 1; /* not padding */
	assert_int_equal(store_cmd_decode(longer, len + 8, &out, &error), -EBADMSG);
	assert_error(&error, "command for table members: trailing bytes after the row");
	/* A name with a NUL byte inside. */
	data[13 + 8 + 2] = 0;
	assert_int_equal(store_cmd_decode(data, len, &out, &error), -EBADMSG);
	assert_non_null(error);
	free(error);
	free(longer);
	free(data);
}

/* ---- apply, table by table ---- */

static void test_cluster_generations(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){generation(1)});
	assert_rejected(s, (struct store_cmd[1]){generation(3)}, "generation 3 does not follow 1");
	assert_applied(s, (struct store_cmd[1]){generation(2)});
	assert_int_equal(store_cluster(s)->generation, 2);
	assert_string_equal(store_cluster(s)->by, "h4");
	struct store_cmd d = del(STORE_CLUSTER);
	assert_rejected(s, &d, "the cluster row cannot be deleted");
	store_state_free(s);
}

static void test_members(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	struct store_cmd h1 = member(1, "h1", "10.77.0.1:7700");
	assert_applied(s, &h1);
	struct store_cmd same_name = member(2, "h1", "10.77.0.2:7700");
	assert_rejected(s, &same_name, "the name h1 belongs to member 1");
	struct store_cmd same_addr = member(2, "h2", "10.77.0.1:7700");
	assert_rejected(s, &same_addr, "the address 10.77.0.1:7700 belongs to member h1");
	struct store_cmd no_id = member(0, "h0", "x");
	assert_rejected(s, &no_id, "a member needs an id, a name and an address");
	struct store_cmd role = h1;
	STORE_CMD_ROW(&role, struct store_member)->role = STORE_ROLE_VOTER;
	assert_applied(s, &role); /* a put updates */
	assert_int_equal(store_member_find(s, 1)->role, STORE_ROLE_VOTER);
	struct store_cmd bad_role = h1;
	STORE_CMD_ROW(&bad_role, struct store_member)->role = 9;
	assert_rejected(s, &bad_role, "unknown role 9");
	struct store_cmd gone = del(STORE_MEMBERS);
	STORE_CMD_ROW(&gone, struct store_member)->id = 5;
	assert_rejected(s, &gone, "no member with id 5");
	STORE_CMD_ROW(&gone, struct store_member)->id = 1;
	assert_applied(s, &gone);
	assert_null(store_member_find(s, 1));
	store_state_free(s);
}

static void test_admissions(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){admission("h2", 10)});
	assert_applied(s, (struct store_cmd[1]){admission("h2", 20)});
	assert_int_equal(store_count(s, TRUST_ADMISSIONS), 1);
	assert_rejected(s, (struct store_cmd[1]){admission("", 10)}, "an admission needs a host");
	struct store_cmd revoke = del(TRUST_ADMISSIONS);
	snprintf(STORE_CMD_ROW(&revoke, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&revoke, struct trust_admission)->host), "h9");
	assert_rejected(s, &revoke, "no such admission");
	snprintf(STORE_CMD_ROW(&revoke, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&revoke, struct trust_admission)->host), "h2");
	assert_applied(s, &revoke);
	store_state_free(s);
}

static void test_attestations(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){attestation("h2", TRUST_ATTEST_ADMITTED, 10)});
	assert_applied(s, (struct store_cmd[1]){attestation("h2", TRUST_ATTEST_REFUSED, 20)});
	assert_int_equal(store_count(s, TRUST_ATTESTATIONS), 1);
	const struct trust_attestation *a = trust_attestation_find(s, "h2");
	assert_non_null(a);
	assert_int_equal(a->state, TRUST_ATTEST_REFUSED);
	assert_string_equal(a->reason, "why");
	assert_int_equal(a->reset_count, 3);
	assert_string_equal(trust_attest_state_name(a->state), "refused");
	assert_string_equal(trust_attest_state_name(TRUST_ATTEST_CHANGED), "changed");
	assert_null(trust_attestation_find(s, "h3"));
	struct store_cmd bad = attestation("h3", TRUST_ATTEST_ADMITTED, 10);
	STORE_CMD_ROW(&bad, struct trust_attestation)->state = TRUST_ATTEST_CHANGED + 1;
	assert_rejected(
	    s, &bad,
	    "an attestation needs a host and a state (admitted, refused, revoked, changed)");
	bad = attestation("", TRUST_ATTEST_ADMITTED, 10);
	assert_rejected(
	    s, &bad,
	    "an attestation needs a host and a state (admitted, refused, revoked, changed)");
	bad = attestation("h3", TRUST_ATTEST_ADMITTED, 10);
	STORE_CMD_ROW(&bad, struct trust_attestation)->measurement[3] = 'X';
	assert_rejected(s, &bad, "a measurement is 64 lowercase hex digits (SHA-256)");
	struct store_cmd gone = del(TRUST_ATTESTATIONS);
	snprintf(STORE_CMD_ROW(&gone, struct trust_attestation)->host,
	         sizeof(STORE_CMD_ROW(&gone, struct trust_attestation)->host), "h2");
	assert_applied(s, &gone);
	assert_rejected(s, &gone, "no such attestation");
	store_state_free(s);
}

static void test_trusted(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){trusted('a', STORE_PUT)});
	assert_rejected(s, (struct store_cmd[1]){trusted('a', STORE_PUT)},
	                "aaaaaaaaaaaaaaaa... is already trusted");
	assert_rejected(s, (struct store_cmd[1]){trusted('A', STORE_PUT)},
	                "a digest is 64 lowercase hex digits (SHA-256)");
	assert_rejected(s, (struct store_cmd[1]){trusted('b', STORE_DELETE)},
	                "no such trusted measurement");
	assert_applied(s, (struct store_cmd[1]){trusted('a', STORE_DELETE)});
	assert_int_equal(store_count(s, TRUST_TRUSTED), 0);
	store_state_free(s);
}

static void test_policy_epochs(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	struct store_result r = apply(s, (struct store_cmd[1]){policy(0, "first")});
	assert_true(r.applied);
	assert_int_equal(r.value, 1);
	assert_rejected(s, (struct store_cmd[1]){policy(0, "stale edit")},
	                "the edit was made on epoch 0, but the policy is at epoch 1");
	r = apply(s, (struct store_cmd[1]){policy(1, "second")});
	assert_int_equal(r.value, 2);
	assert_string_equal(store_policy(s)->text, "second");
	struct store_cmd d = del(STORE_POLICY);
	assert_rejected(s, &d, "the policy cannot be deleted, only replaced");
	store_state_free(s);
}

/* Two phases: a new epoch is pending beside the active one until it is
 * activated; a newer apply replaces a pending epoch; the epoch it
 * replaced stays known (for the packets still stamped with it). */
static void test_policy_two_phases(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	const char *text = "x";
	assert_int_equal(store_policy_active(s, &text), 0);
	assert_null(text);
	assert_applied(s, (struct store_cmd[1]){policy(0, "first")});
	const struct store_policy_epochs *e = store_policy_epochs(s);
	assert_int_equal(e->pending, 1);
	assert_int_equal(e->other, 0);
	assert_int_equal(store_policy_active(s, &text), 0);
	assert_null(text);
	assert_rejected(s, (struct store_cmd[1]){activate(2)},
	                "epoch 2 is not pending (the policy is at epoch 1, active 0)");
	assert_rejected(s, (struct store_cmd[1]){activate(0)},
	                "an epoch is made pending by a policy, and only activated here");
	struct store_cmd at = activate(1);
	at.time_ms = 4242;
	struct store_result r = apply(s, &at);
	assert_true(r.applied);
	assert_int_equal(r.value, 1);
	e = store_policy_epochs(s);
	assert_int_equal(e->pending, 0);
	assert_int_equal(e->activated_ms, 4242);
	assert_int_equal(store_policy_active(s, &text), 1);
	assert_string_equal(text, "first");
	assert_rejected(s, (struct store_cmd[1]){activate(1)},
	                "epoch 1 is not pending (the policy is at epoch 1, active 1)");

	/* 2 pending beside 1; 3 replaces 2 and is still beside 1. */
	assert_applied(s, (struct store_cmd[1]){policy(1, "second")});
	assert_applied(s, (struct store_cmd[1]){policy(2, "third")});
	e = store_policy_epochs(s);
	assert_int_equal(e->pending, 3);
	assert_int_equal(e->other, 1);
	assert_string_equal(e->other_text, "first");
	assert_int_equal(store_policy_active(s, &text), 1);
	assert_string_equal(text, "first");
	assert_rejected(s, (struct store_cmd[1]){activate(2)},
	                "epoch 2 is not pending (the policy is at epoch 3, active 1)");
	assert_applied(s, (struct store_cmd[1]){activate(3)});
	e = store_policy_epochs(s);
	assert_int_equal(e->other, 1); /* replaced: still known */
	assert_int_equal(store_policy_active(s, &text), 3);
	assert_string_equal(text, "third");

	/* Acknowledgements: one row a host, the newest. */
	assert_applied(s, (struct store_cmd[1]){ack("h1", 2)});
	assert_applied(s, (struct store_cmd[1]){ack("h1", 3)});
	assert_applied(s, (struct store_cmd[1]){ack("h2", 3)});
	assert_rejected(s, (struct store_cmd[1]){ack("", 3)}, "an acknowledgement names its host");
	assert_int_equal(store_count(s, STORE_POLICY_ACKS), 2);
	assert_int_equal(((const struct store_policy_ack *)store_row(s, STORE_POLICY_ACKS, 0))->epoch,
	                 3);

	/* The last member's acknowledgement activates the pending epoch in
	 * the same command; a non-member's counts for nothing. */
	assert_applied(s, (struct store_cmd[1]){member(1, "h1", "10.77.0.1:7700")});
	assert_applied(s, (struct store_cmd[1]){member(2, "h2", "10.77.0.2:7700")});
	assert_applied(s, (struct store_cmd[1]){policy(3, "fourth")});
	uint64_t fourth = store_policy(s)->epoch;
	r = apply(s, (struct store_cmd[1]){ack("h9", fourth)});
	assert_true(r.applied);
	assert_int_equal(r.value, 0);
	r = apply(s, (struct store_cmd[1]){ack("h1", fourth)});
	assert_int_equal(r.value, 0);
	assert_int_equal(store_policy_epochs(s)->pending, fourth);
	r = apply(s, (struct store_cmd[1]){ack("h2", fourth)});
	assert_true(r.applied);
	assert_int_equal(r.value, fourth);
	assert_int_equal(store_policy_epochs(s)->pending, 0);
	assert_int_equal(store_policy_active(s, &text), fourth);
	assert_string_equal(text, "fourth");
	assert_int_equal(store_policy_epochs(s)->other, 3);

	/* A snapshot keeps all of it. */
	uint8_t *snap;
	size_t len;
	char *error = NULL;
	snapshot(s, &snap, &len);
	struct store_state *c = new_state();
	assert_int_equal(store_state_restore(c, snap, len, &error), 0);
	assert_int_equal(store_policy_epochs(c)->other, 3);
	assert_string_equal(store_policy_epochs(c)->other_text, "third");
	assert_int_equal(store_policy_active(c, NULL), fourth);
	assert_int_equal(store_count(c, STORE_POLICY_ACKS), 3);
	free(snap);
	store_state_free(c);
	store_state_free(s);
}

static void test_nat_blocks(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){block(4096, 1024, 1, STORE_PUT)});
	assert_rejected(s, (struct store_cmd[1]){block(4096, 1000, 2, STORE_PUT)},
	                "a block's size is a power of two and its start a multiple of it");
	assert_rejected(s, (struct store_cmd[1]){block(4100, 4, 2, STORE_PUT)},
	                "ports 4100-4103 overlap the block 4096-5119 of member 1");
	assert_rejected(s, (struct store_cmd[1]){block(0, 8192, 2, STORE_PUT)},
	                "ports 0-8191 overlap the block 4096-5119 of member 1");
	assert_rejected(s, (struct store_cmd[1]){block(8192, 1024, 0, STORE_PUT)},
	                "a block needs an owner");
	assert_rejected(s, (struct store_cmd[1]){block(4096, 1024, 2, STORE_DELETE)},
	                "member 2 holds no block at 4096");
	assert_applied(s, (struct store_cmd[1]){block(5120, 1024, 2, STORE_PUT)});
	assert_applied(s, (struct store_cmd[1]){block(4096, 1024, 1, STORE_DELETE)});
	assert_int_equal(store_count(s, NAT_BLOCKS), 1);
	store_state_free(s);
}

static void test_nat_mappings(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){mapping(8080, 1, STORE_PUT)});
	assert_applied(s, (struct store_cmd[1]){mapping(8080, 1, STORE_PUT)}); /* renewal */
	assert_rejected(s, (struct store_cmd[1]){mapping(8080, 2, STORE_PUT)},
	                "public port 8080/tcp is mapped by member 1");
	struct store_cmd icmp = mapping(1, 1, STORE_PUT);
	STORE_CMD_ROW(&icmp, struct nat_mapping)->proto = 1;
	assert_rejected(s, &icmp, "a mapping is for TCP (6) or UDP (17)");
	assert_rejected(s, (struct store_cmd[1]){mapping(9090, 1, STORE_DELETE)},
	                "no such mapping");
	assert_applied(s, (struct store_cmd[1]){mapping(8080, 1, STORE_DELETE)});
	store_state_free(s);
}

static void test_leases(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_applied(s, (struct store_cmd[1]){lease("02:00:00:00:00:01", 0x0a4d0201, 500, 100)});
	/* Unexpired at the command's own time: refused. */
	assert_rejected(s, (struct store_cmd[1]){lease("02:00:00:00:00:02", 0x0a4d0201, 900, 400)},
	                "the address is leased to 02:00:00:00:00:01");
	/* Expired: the address goes to the new MAC, the old lease with it. */
	assert_applied(s, (struct store_cmd[1]){lease("02:00:00:00:00:02", 0x0a4d0201, 900, 600)});
	assert_int_equal(store_count(s, STORE_LEASES), 1);
	const struct store_lease *l = store_row(s, STORE_LEASES, 0);
	assert_string_equal(l->mac, "02:00:00:00:00:02");
	struct store_cmd d = del(STORE_LEASES);
	snprintf(STORE_CMD_ROW(&d, struct store_lease)->mac,
	         sizeof(STORE_CMD_ROW(&d, struct store_lease)->mac), "02:00:00:00:00:01");
	assert_rejected(s, &d, "no such lease");
	store_state_free(s);
}

static void test_conflicts_get_ids(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_int_equal(apply(s, (struct store_cmd[1]){conflict("one")}).value, 1);
	assert_int_equal(apply(s, (struct store_cmd[1]){conflict("two")}).value, 2);
	struct store_cmd clear = del(STORE_CONFLICTS);
	STORE_CMD_ROW(&clear, struct store_conflict)->id = 1;
	assert_applied(s, &clear);
	assert_rejected(s, &clear, "no such conflict");
	assert_int_equal(store_count(s, STORE_CONFLICTS), 1);
	store_state_free(s);
}

/* ---- snapshots and determinism ---- */

static struct store_state *populated(void)
{
	struct store_state *s = new_state();
	struct store_cmd cmds[] = {
	    generation(1),
	    member(1, "h1", "10.77.0.1:7700"),
	    member(2, "h2", "10.77.0.2:7700"),
	    admission("h1", 5),
	    trusted('c', STORE_PUT),
	    trusted('d', STORE_PUT),
	    policy(0, "allow all\n"),
	    block(2048, 512, 1, STORE_PUT),
	    mapping(443, 2, STORE_PUT),
	    lease("02:00:00:00:00:05", 0x0a4d0205, 99, 1),
	    conflict("kept for the admin"),
	    attestation("h1", TRUST_ATTEST_ADMITTED, 5),
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		assert_applied(s, &cmds[i]);
	return s;
}

static void test_deterministic_and_snapshot_round_trip(void **state)
{
	(void)state;
	struct store_state *a = populated(), *b = populated(), *c = new_state();
	uint8_t *sa, *sb, *sc;
	size_t la, lb, lc;
	char *error = NULL;
	snapshot(a, &sa, &la);
	snapshot(b, &sb, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(sa, sb, la);
	assert_int_equal(store_state_restore(c, sa, la, &error), 0);
	snapshot(c, &sc, &lc);
	assert_int_equal(la, lc);
	assert_memory_equal(sa, sc, la);
	assert_string_equal(store_policy(c)->text, "allow all\n");
	/* Restored state goes on like the original. */
	assert_int_equal(apply(c, (struct store_cmd[1]){conflict("next")}).value, 2);
	free(sa);
	free(sb);
	free(sc);
	store_state_free(a);
	store_state_free(b);
	store_state_free(c);
}

static void test_bad_snapshots_change_nothing(void **state)
{
	(void)state;
	struct store_state *src = populated(), *dst = populated();
	uint8_t *snap, *before, *after;
	size_t len, blen, alen;
	char *error = NULL;
	snapshot(src, &snap, &len);
	snapshot(dst, &before, &blen);
	for (size_t cut = 0; cut < len; cut += 7) {
		assert_int_equal(store_state_restore(dst, snap, cut, &error), -EBADMSG);
		assert_true(strncmp(error, "snapshot: ", 10) == 0);
		free(error);
		error = NULL;
	}
	uint8_t *longer = calloc(1, len + 1);
	memcpy(longer, snap, len);
	assert_int_equal(store_state_restore(dst, longer, len + 1, &error), -EBADMSG);
	assert_error(&error, "snapshot: trailing bytes");
	snap[0] ^= 0xff;
	assert_int_equal(store_state_restore(dst, snap, len, &error), -EBADMSG);
	assert_error(&error, "snapshot: bad magic");
	snapshot(dst, &after, &alen);
	assert_int_equal(blen, alen);
	assert_memory_equal(before, after, blen);
	free(longer);
	free(snap);
	free(before);
	free(after);
	store_state_free(src);
	store_state_free(dst);
}

static void test_dump(void **state)
{
	(void)state;
	struct store_state *s = populated();
	json_t *d = store_state_dump(s);
	const char *tables[] = {"cluster",    "members",      "admissions", "trusted",  "policy",
	                        "nat_blocks", "nat_mappings", "leases",     "conflicts"};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		assert_non_null(json_object_get(d, tables[i]));
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(d, "cluster"), "generation")), 1);
	json_t *m = json_array_get(json_object_get(d, "members"), 1);
	assert_string_equal(json_string_value(json_object_get(m, "name")), "h2");
	assert_string_equal(json_string_value(json_object_get(m, "role")), "standby");
	json_t *map = json_array_get(json_object_get(d, "nat_mappings"), 0);
	assert_string_equal(json_string_value(json_object_get(map, "proto")), "tcp");
	assert_string_equal(json_string_value(json_object_get(map, "guest_addr")), "10.77.1.1");
	json_t *l = json_array_get(json_object_get(d, "leases"), 0);
	assert_string_equal(json_string_value(json_object_get(l, "addr")), "10.77.2.5");
	json_decref(d);
	assert_int_equal(store_table_from_name("nat_blocks"), NAT_BLOCKS);
	assert_int_equal(store_table_from_name("nope"), -ENOENT);
	store_state_free(s);
}

static void test_devices(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	const char *bad_mac = "a device's MAC is six lowercase hex pairs (xx:xx:xx:xx:xx:xx), "
	                      "unicast and not all zero";
	const char *macs[] = {"02:AA:00:00:00:01", "02:aa:00:00:00",    "02-aa-00-00-00-01",
	                      "01:00:5e:00:00:01", "00:00:00:00:00:00", "",
	                      "02:aa:00:00:00:0g", "02:aa:00:00:00-01"};
	for (size_t i = 0; i < sizeof(macs) / sizeof(macs[0]); i++)
		assert_rejected(s, (struct store_cmd[1]){device(macs[i], "printer", 0, 5)},
		                bad_mac);
	const char *bad_name = "a device's name is 1 to 31 letters, digits, '.', '_' or '-'";
	assert_rejected(s, (struct store_cmd[1]){device("02:aa:00:00:00:01", "", 0, 5)}, bad_name);
	assert_rejected(s, (struct store_cmd[1]){device("02:aa:00:00:00:01", "my printer", 0, 5)},
	                bad_name);
	struct store_cmd gone = device("02:aa:00:00:00:01", "", 0, 0);
	gone.op = STORE_DELETE;
	assert_rejected(s, &gone, "no such device");

	assert_applied(s, (struct store_cmd[1]){device("02:aa:00:00:00:01", "printer", 0, 5)});
	assert_applied(s, (struct store_cmd[1]){device("02:aa:00:00:00:02", "phone", 0, 6)});
	assert_null(devices_device_find(s, "02:aa:00:00:00:03"));
	assert_int_equal(devices_device_find(s, "02:aa:00:00:00:01")->address, 0);
	/* Learned: an address seen at another device moves to it. */
	assert_applied(
	    s, (struct store_cmd[1]){device("02:aa:00:00:00:01", "printer", 0x0a4d0201, 5)});
	assert_applied(s,
	               (struct store_cmd[1]){device("02:aa:00:00:00:02", "phone", 0x0a4d0201, 6)});
	assert_int_equal(devices_device_find(s, "02:aa:00:00:00:01")->address, 0);
	assert_int_equal(devices_device_find(s, "02:aa:00:00:00:02")->address, 0x0a4d0201);
	assert_int_equal(devices_device_find(s, "02:aa:00:00:00:02")->port, 7);
	assert_applied(s, &gone);
	assert_int_equal(store_count(s, DEVICES_DEVICES), 1);

	json_t *d = store_table_dump(s, DEVICES_DEVICES);
	json_t *row = json_array_get(d, 0);
	assert_string_equal(json_string_value(json_object_get(row, "name")), "phone");
	assert_string_equal(json_string_value(json_object_get(row, "address")), "10.77.2.1");
	json_decref(d);
	store_state_free(s);
}

static void test_manager(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	assert_rejected(s, (struct store_cmd[1]){manager("h2")},
	                "the manager must be a member; \"h2\" is not");
	assert_rejected(s, (struct store_cmd[1]){manager("")},
	                "the manager must be a member; \"\" is not");
	assert_applied(s, (struct store_cmd[1]){member(2, "h2", "10.77.0.2:7700")});
	assert_applied(s, (struct store_cmd[1]){manager("h2")});
	assert_string_equal(devices_manager(s)->host, "h2");
	assert_int_equal(store_count(s, DEVICES_MANAGER), 1);
	json_t *j = store_table_dump(s, DEVICES_MANAGER);
	assert_string_equal(json_string_value(json_object_get(j, "host")), "h2");
	json_decref(j);

	/* Snapshots carry both tables; an encoding 2 snapshot (without
	 * them, nor attestations) loads with no devices and no manager. */
	assert_applied(s, (struct store_cmd[1]){device("02:aa:00:00:00:01", "printer", 0, 5)});
	uint8_t *snap;
	size_t len;
	char *error = NULL;
	snapshot(s, &snap, &len);
	struct store_state *c = new_state();
	assert_int_equal(store_state_restore(c, snap, len, &error), 0);
	assert_string_equal(devices_manager(c)->host, "h2");
	assert_non_null(devices_device_find(c, "02:aa:00:00:00:01"));
	free(snap);

	struct store_state *e = new_state();
	assert_applied(e, (struct store_cmd[1]){member(2, "h2", "10.77.0.2:7700")});
	snapshot(e, &snap, &len);
	/* attestations, devices: tag, count; manager: tag, "", since;
	 * labels (encoding 4): tag, count; policy epochs (6): tag, four
	 * numbers and an empty text; acknowledgements (6): tag, count */
	size_t tail = 5 + 5 + 1 + 2 + 8 + 5 + 1 + 8 * 4 + 4 + 5;
	snap[4] = 2;
	assert_int_equal(store_state_restore(c, snap, len - tail, &error), 0);
	assert_int_equal(store_count(c, DEVICES_DEVICES), 0);
	assert_string_equal(devices_manager(c)->host, "");
	assert_non_null(store_member_find(c, 2));
	free(snap);

	struct store_cmd clear = manager("");
	clear.op = STORE_DELETE;
	assert_applied(s, &clear);
	assert_string_equal(devices_manager(s)->host, "");
	store_state_free(c);
	store_state_free(e);
	store_state_free(s);
}

/* ---- merge rules ---- */

static enum store_merge merge(const struct store_state *s, struct store_cmd *cmd, char *reason)
{
	char *why = NULL;
	enum store_merge m = store_merge(s, cmd, &why);
	snprintf(reason, STORE_REASON_MAX, "%s", why ? why : "");
	free(why);
	return m;
}

static void test_merge_rules(void **state)
{
	(void)state;
	struct store_state *s = populated();
	char reason[STORE_REASON_MAX];
	struct store_cmd c;

	c = generation(5);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = member(9, "h9", "x");
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);

	c = trusted('c', STORE_PUT); /* present */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = trusted('e', STORE_PUT);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = trusted('e', STORE_DELETE); /* already gone */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = trusted('d', STORE_DELETE);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);

	c = admission("h1", 4); /* older than the new cluster's */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = admission("h1", 6);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = attestation("h1", TRUST_ATTEST_REFUSED, 4); /* the new cluster knows better */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = attestation("h1", TRUST_ATTEST_REFUSED, 6);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = attestation("h7", TRUST_ATTEST_REFUSED, 6);
	c.op = STORE_DELETE; /* nothing to delete */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);

	c = policy(1, "made on the current epoch");
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = policy(0, "made on an old epoch");
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_CONFLICT);
	assert_string_equal(reason, "a policy edit made on epoch 0 meets epoch 1; review it and "
	                            "apply it again by hand");

	/* The same block, claimed by another host on the other side: the
	 * orphan's owner gets the next free aligned block. */
	c = block(2048, 512, 2, STORE_PUT);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	assert_int_equal(STORE_CMD_ROW(&c, struct nat_block)->start, 1024);
	assert_int_equal(STORE_CMD_ROW(&c, struct nat_block)->size, 512);
	c = block(2048, 512, 1, STORE_PUT); /* the same claim on both sides */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = block(0, 32768, 3, STORE_PUT); /* moved to the free upper half */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	assert_int_equal(STORE_CMD_ROW(&c, struct nat_block)->start, 32768);
	assert_applied(s, (struct store_cmd[1]){block(32768, 32768, 1, STORE_PUT)});
	c = block(0, 32768, 3, STORE_PUT); /* now no free block of that size is left */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_CONFLICT);
	assert_string_equal(reason, "NAT block 0/32768 of member 3 was claimed on both sides and "
	                            "no free block is left");

	c = mapping(443, 2, STORE_PUT);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = mapping(443, 3, STORE_PUT);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_CONFLICT);
	assert_string_equal(
	    reason, "public port 443 was mapped by member 2 on one side and 3 on the other");
	c = mapping(444, 3, STORE_PUT);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);

	c = lease("02:00:00:00:00:05", 0x0a4d0205, 99, 1);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = lease("02:00:00:00:00:06", 0x0a4d0205, 99, 1);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_CONFLICT);
	assert_string_equal(reason, "an address was leased to 02:00:00:00:00:05 and to "
	                            "02:00:00:00:00:06");

	/* Devices: the newer allowance wins; the manager is the new
	 * cluster's leader's to choose. */
	assert_applied(s, (struct store_cmd[1]){device("02:aa:00:00:00:01", "printer", 0, 50)});
	c = device("02:aa:00:00:00:01", "old-name", 0, 40);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = device("02:aa:00:00:00:01", "new-name", 0, 60);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = device("02:aa:00:00:00:02", "phone", 0, 10);
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = device("02:aa:00:00:00:01", "printer", 0, 0);
	c.op = STORE_DELETE;
	c.time_ms = 45; /* removed before the new cluster allowed it again */
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c.time_ms = 55;
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_APPLY);
	c = device("02:aa:00:00:00:02", "phone", 0, 0);
	c.op = STORE_DELETE;
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	c = manager("h1");
	assert_int_equal(merge(s, &c, reason), STORE_MERGE_SKIP);
	store_state_free(s);
}

/* ---- registry ---- */

static void noop_encode(struct obuf *b, const void *row)
{
	(void)b, (void)row;
}

static void noop_decode(struct cursor *c, void *row)
{
	(void)c, (void)row;
}

static int noop_apply(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	(void)s, (void)cmd, (void)res;
	return 0;
}

static json_t *noop_json(const void *row)
{
	(void)row;
	return json_object();
}

static void test_registry_refuses_collisions(void **state)
{
	(void)state;
	/* Registered for the rest of the process: this test runs last. */
	static struct store_table t = {.id = 200,
	                               .name = "extra",
	                               .version = 1,
	                               .row_size = 8,
	                               .single = true,
	                               .encode = noop_encode,
	                               .decode = noop_decode,
	                               .apply = noop_apply,
	                               .to_json = noop_json};
	struct store_table same_id = t, same_name = t, too_big = t, newer = t;
	same_id.name = "other";
	same_name.id = 201;
	same_name.name = "devices";
	too_big.id = 202;
	too_big.name = "big";
	too_big.row_size = STORE_ROW_MAX + 1;
	newer.id = 203;
	newer.name = "newer";
	newer.version = STORE_ENCODING_VERSION + 1;
	struct {
		const struct store_table *table;
		int r;
		const char *error;
	} cases[] = {
	    {&same_name, -EEXIST, "table name devices is taken by table 13"},
	    {&too_big, -EINVAL, "table big: a row of 513 bytes exceeds 512"},
	    {&newer, -EINVAL, "table newer: unknown encoding version 7"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *error = NULL;
		const struct store_table *list[] = {cases[i].table, NULL};
		assert_int_equal(store_tables_register(list, &error), cases[i].r);
		assert_error(&error, cases[i].error);
		free(error);
	}
	/* The store's own ids are taken from the start. */
	struct store_table core_id = t;
	core_id.id = STORE_CONFLICTS;
	const struct store_table *core[] = {&core_id, NULL};
	char *error = NULL;
	assert_int_equal(store_tables_register(core, &error), -EEXIST);
	assert_error(&error, "table id 9 is conflicts's, not extra's");
	free(error);
	/* Registered once, and again: nothing changes; another with its id is
	 * refused, and a list is all or none. */
	const struct store_table *list[] = {&t, NULL};
	assert_int_equal(store_tables_register(list, NULL), 0);
	assert_int_equal(store_tables_register(list, NULL), 0);
	const struct store_table *both[] = {&too_big, &same_id, NULL};
	error = NULL;
	assert_int_equal(store_tables_register(both, &error), -EINVAL);
	free(error);
	assert_ptr_equal(store_table_lookup(200), &t);
	assert_null(store_table_lookup(202));
	assert_int_equal(store_table_from_name("extra"), 200);
	const struct store_table *again[] = {&same_id, NULL};
	error = NULL;
	assert_int_equal(store_tables_register(again, &error), -EEXIST);
	assert_error(&error, "table id 200 is extra's, not other's");
	free(error);
}

static struct store_cmd label(uint8_t op, const char *name, const char *text, uint64_t ms)
{
	struct store_cmd c = {.table = LABELS_TABLE, .op = op, .time_ms = ms};
	struct labels_label *l = STORE_CMD_ROW(&c, struct labels_label);
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->text, sizeof(l->text), "%s", text);
	l->set_ms = ms;
	return c;
}

/* The labels service's table: checks, replacement, removal, and its merge
 * rule (the admin's later word wins). */
static void test_labels(void **state)
{
	(void)state;
	struct store_state *s = new_state();
	struct store_cmd c = label(STORE_PUT, "printer1", "2nd floor", 1000);
	assert_applied(s, &c);
	c = label(STORE_PUT, "printer1", "3rd floor", 2000);
	assert_applied(s, &c);
	assert_int_equal(store_count(s, LABELS_TABLE), 1);
	assert_string_equal(((const struct labels_label *)store_row(s, LABELS_TABLE, 0))->text,
	                    "3rd floor");
	c = label(STORE_PUT, "no spaces", "x", 3000);
	assert_rejected(s, &c, "a label's name is 1 to 31 letters, digits, '.', '_' or '-'");
	c = label(STORE_PUT, "h1", "", 3000);
	assert_rejected(s, &c, "a label is 1 to 127 printable characters");
	c = label(STORE_PUT, "h1", "tab\there", 3000);
	assert_rejected(s, &c, "a label is 1 to 127 printable characters");
	c = label(STORE_DELETE, "h1", "", 3000);
	assert_rejected(s, &c, "no such label");

	/* Orphans of a recovery by fiat, against the new cluster's row set at
	 * 2000: an older put or a delete before it is skipped, a newer one is
	 * merged; a label the new cluster lacks comes back. */
	char *reason = NULL;
	c = label(STORE_PUT, "printer1", "old", 1500);
	assert_int_equal(store_merge(s, &c, &reason), STORE_MERGE_SKIP);
	c = label(STORE_PUT, "printer1", "newer", 2500);
	assert_int_equal(store_merge(s, &c, &reason), STORE_MERGE_APPLY);
	c = label(STORE_DELETE, "printer1", "", 1800);
	assert_int_equal(store_merge(s, &c, &reason), STORE_MERGE_SKIP);
	c = label(STORE_DELETE, "printer1", "", 2200);
	assert_int_equal(store_merge(s, &c, &reason), STORE_MERGE_APPLY);
	c = label(STORE_PUT, "d1", "visitor", 1200);
	assert_int_equal(store_merge(s, &c, &reason), STORE_MERGE_APPLY);
	assert_null(reason);
	store_state_free(s);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_table_round_trips),
	    cmocka_unit_test(test_decode_rejects_bad_bytes),
	    cmocka_unit_test(test_cluster_generations),
	    cmocka_unit_test(test_members),
	    cmocka_unit_test(test_admissions),
	    cmocka_unit_test(test_trusted),
	    cmocka_unit_test(test_policy_epochs),
	    cmocka_unit_test(test_policy_two_phases),
	    cmocka_unit_test(test_nat_blocks),
	    cmocka_unit_test(test_nat_mappings),
	    cmocka_unit_test(test_leases),
	    cmocka_unit_test(test_conflicts_get_ids),
	    cmocka_unit_test(test_deterministic_and_snapshot_round_trip),
	    cmocka_unit_test(test_bad_snapshots_change_nothing),
	    cmocka_unit_test(test_dump),
	    cmocka_unit_test(test_devices),
	    cmocka_unit_test(test_manager),
	    cmocka_unit_test(test_merge_rules),
	    cmocka_unit_test(test_attestations),
	    cmocka_unit_test(test_registry_refuses_collisions),
	    cmocka_unit_test(test_labels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
