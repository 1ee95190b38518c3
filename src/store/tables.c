#include "tables.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

#define SNAPSHOT_MAGIC 0x4554534eu /* "ETSN" */
#define COMMAND_MAGIC  0x4543u     /* "EC" */

struct table {
	size_t n, cap;
	union store_row *rows; /* sorted by key */
};

struct store_state {
	struct store_cluster cluster;
	struct store_policy policy;
	struct store_manager manager;
	struct table tables[STORE_TABLE_MAX];
	uint64_t next_conflict;
};

/* What the generic code needs to know of a multi-row table. */
struct table_ops {
	const char *name;
	void (*encode)(struct obuf *b, const union store_row *r);
	void (*decode)(struct cursor *c, union store_row *r);
	int (*cmp)(const union store_row *a, const union store_row *b); /* by key */
	json_t *(*to_json)(const union store_row *r);
};

static const struct table_ops ops[STORE_TABLE_MAX];

/* ---- helpers ---- */

static void reject(struct store_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reject(struct store_result *res, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
	res->applied = false;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static json_t *addr_json(uint32_t addr)
{
	char s[INET_ADDRSTRLEN];
	struct in_addr in = {.s_addr = htonl(addr)};
	return json_string(inet_ntop(AF_INET, &in, s, sizeof(s)));
}

static bool is_hex_digest(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return n == 64;
}

/* ---- per-table encodings ---- */

static void member_encode(struct obuf *b, const union store_row *r)
{
	const struct store_member *m = &r->member;
	obuf_put_u64(b, m->id);
	obuf_put_str(b, m->name);
	obuf_put_str(b, m->address);
	obuf_put_str(b, m->peer);
	obuf_put_u8(b, m->role);
	obuf_put_str(b, m->raft_version);
	obuf_put_u64(b, m->joined_ms);
}

static void member_decode(struct cursor *c, union store_row *r)
{
	struct store_member *m = &r->member;
	m->id = cursor_u64(c);
	cursor_str(c, m->name, sizeof(m->name));
	cursor_str(c, m->address, sizeof(m->address));
	cursor_str(c, m->peer, sizeof(m->peer));
	m->role = cursor_u8(c);
	cursor_str(c, m->raft_version, sizeof(m->raft_version));
	m->joined_ms = cursor_u64(c);
}

static int member_cmp(const union store_row *a, const union store_row *b)
{
	return cmp_u64(a->member.id, b->member.id);
}

const char *store_role_name(unsigned role)
{
	switch (role) {
	case STORE_ROLE_VOTER:
		return "voter";
	case STORE_ROLE_STANDBY:
		return "standby";
	case STORE_ROLE_SPARE:
		return "spare";
	}
	return "none";
}

static json_t *member_json(const union store_row *r)
{
	const struct store_member *m = &r->member;
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I}", "id", (json_int_t)m->id, "name",
	                 m->name, "address", m->address, "peer", m->peer, "role",
	                 store_role_name(m->role), "raft_version", m->raft_version, "joined_ms",
	                 (json_int_t)m->joined_ms);
}

static void admission_encode(struct obuf *b, const union store_row *r)
{
	const struct store_admission *a = &r->admission;
	obuf_put_str(b, a->host);
	obuf_put_str(b, a->ek_fp);
	obuf_put_str(b, a->ak_fp);
	obuf_put_str(b, a->measurement);
	obuf_put_str(b, a->mac);
	obuf_put_u64(b, a->dpid);
	obuf_put_u32(b, a->port);
	obuf_put_u64(b, a->time_ms);
}

static void admission_decode(struct cursor *c, union store_row *r)
{
	struct store_admission *a = &r->admission;
	cursor_str(c, a->host, sizeof(a->host));
	cursor_str(c, a->ek_fp, sizeof(a->ek_fp));
	cursor_str(c, a->ak_fp, sizeof(a->ak_fp));
	cursor_str(c, a->measurement, sizeof(a->measurement));
	cursor_str(c, a->mac, sizeof(a->mac));
	a->dpid = cursor_u64(c);
	a->port = cursor_u32(c);
	a->time_ms = cursor_u64(c);
}

static int admission_cmp(const union store_row *a, const union store_row *b)
{
	return strcmp(a->admission.host, b->admission.host);
}

static json_t *admission_json(const union store_row *r)
{
	const struct store_admission *a = &r->admission;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "host", a->host, "ek_fp",
	                 a->ek_fp, "ak_fp", a->ak_fp, "measurement", a->measurement, "mac", a->mac,
	                 "dpid", (json_int_t)a->dpid, "port", (json_int_t)a->port, "time_ms",
	                 (json_int_t)a->time_ms);
}

static void trusted_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_str(b, r->trusted.digest);
	obuf_put_str(b, r->trusted.note);
	obuf_put_u64(b, r->trusted.added_ms);
}

static void trusted_decode(struct cursor *c, union store_row *r)
{
	cursor_str(c, r->trusted.digest, sizeof(r->trusted.digest));
	cursor_str(c, r->trusted.note, sizeof(r->trusted.note));
	r->trusted.added_ms = cursor_u64(c);
}

static int trusted_cmp(const union store_row *a, const union store_row *b)
{
	return strcmp(a->trusted.digest, b->trusted.digest);
}

static json_t *trusted_json(const union store_row *r)
{
	return json_pack("{s:s, s:s, s:I}", "digest", r->trusted.digest, "note", r->trusted.note,
	                 "added_ms", (json_int_t)r->trusted.added_ms);
}

static void block_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_u16(b, r->nat_block.start);
	obuf_put_u16(b, r->nat_block.size);
	obuf_put_u64(b, r->nat_block.owner);
	obuf_put_u64(b, r->nat_block.claimed_ms);
}

static void block_decode(struct cursor *c, union store_row *r)
{
	r->nat_block.start = cursor_u16(c);
	r->nat_block.size = cursor_u16(c);
	r->nat_block.owner = cursor_u64(c);
	r->nat_block.claimed_ms = cursor_u64(c);
}

static int block_cmp(const union store_row *a, const union store_row *b)
{
	return cmp_u64(a->nat_block.start, b->nat_block.start);
}

static json_t *block_json(const union store_row *r)
{
	return json_pack("{s:i, s:i, s:I, s:I}", "start", r->nat_block.start, "size",
	                 r->nat_block.size, "owner", (json_int_t)r->nat_block.owner, "claimed_ms",
	                 (json_int_t)r->nat_block.claimed_ms);
}

static void mapping_encode(struct obuf *b, const union store_row *r)
{
	const struct store_nat_mapping *m = &r->nat_mapping;
	obuf_put_u8(b, m->proto);
	obuf_put_u16(b, m->public_port);
	obuf_put_u64(b, m->owner);
	obuf_put_u32(b, m->guest_addr);
	obuf_put_u16(b, m->guest_port);
	obuf_put_u64(b, m->expires_ms);
}

static void mapping_decode(struct cursor *c, union store_row *r)
{
	struct store_nat_mapping *m = &r->nat_mapping;
	m->proto = cursor_u8(c);
	m->public_port = cursor_u16(c);
	m->owner = cursor_u64(c);
	m->guest_addr = cursor_u32(c);
	m->guest_port = cursor_u16(c);
	m->expires_ms = cursor_u64(c);
}

static int mapping_cmp(const union store_row *a, const union store_row *b)
{
	int r = cmp_u64(a->nat_mapping.proto, b->nat_mapping.proto);
	return r ? r : cmp_u64(a->nat_mapping.public_port, b->nat_mapping.public_port);
}

static json_t *mapping_json(const union store_row *r)
{
	const struct store_nat_mapping *m = &r->nat_mapping;
	return json_pack("{s:s, s:i, s:I, s:o, s:i, s:I}", "proto",
	                 m->proto == 6    ? "tcp"
	                 : m->proto == 17 ? "udp"
	                                  : "other",
	                 "public_port", m->public_port, "owner", (json_int_t)m->owner, "guest_addr",
	                 addr_json(m->guest_addr), "guest_port", m->guest_port, "expires_ms",
	                 (json_int_t)m->expires_ms);
}

static void lease_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_str(b, r->lease.mac);
	obuf_put_u32(b, r->lease.addr);
	obuf_put_str(b, r->lease.host);
	obuf_put_u64(b, r->lease.expires_ms);
}

static void lease_decode(struct cursor *c, union store_row *r)
{
	cursor_str(c, r->lease.mac, sizeof(r->lease.mac));
	r->lease.addr = cursor_u32(c);
	cursor_str(c, r->lease.host, sizeof(r->lease.host));
	r->lease.expires_ms = cursor_u64(c);
}

static int lease_cmp(const union store_row *a, const union store_row *b)
{
	return strcmp(a->lease.mac, b->lease.mac);
}

static json_t *lease_json(const union store_row *r)
{
	return json_pack("{s:s, s:o, s:s, s:I}", "mac", r->lease.mac, "addr",
	                 addr_json(r->lease.addr), "host", r->lease.host, "expires_ms",
	                 (json_int_t)r->lease.expires_ms);
}

static void conflict_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_u64(b, r->conflict.id);
	obuf_put_u8(b, r->conflict.table);
	obuf_put_u64(b, r->conflict.generation);
	obuf_put_str(b, r->conflict.reason);
}

static void conflict_decode(struct cursor *c, union store_row *r)
{
	r->conflict.id = cursor_u64(c);
	r->conflict.table = cursor_u8(c);
	r->conflict.generation = cursor_u64(c);
	cursor_str(c, r->conflict.reason, sizeof(r->conflict.reason));
}

static int conflict_cmp(const union store_row *a, const union store_row *b)
{
	return cmp_u64(a->conflict.id, b->conflict.id);
}

static json_t *conflict_json(const union store_row *r)
{
	const char *table = store_table_name(r->conflict.table);
	return json_pack("{s:I, s:s, s:I, s:s}", "id", (json_int_t)r->conflict.id, "table",
	                 table ? table : "unknown", "generation",
	                 (json_int_t)r->conflict.generation, "reason", r->conflict.reason);
}

static void location_encode(struct obuf *b, const union store_row *r)
{
	const struct store_location *l = &r->location;
	obuf_put_str(b, l->host);
	obuf_put_str(b, l->mac);
	obuf_put_u64(b, l->dpid);
	obuf_put_u32(b, l->port);
	obuf_put_u32(b, l->control_addr);
	obuf_put_u32(b, l->guest_addr);
	obuf_put_u64(b, l->seen_ms);
}

static void location_decode(struct cursor *c, union store_row *r)
{
	struct store_location *l = &r->location;
	cursor_str(c, l->host, sizeof(l->host));
	cursor_str(c, l->mac, sizeof(l->mac));
	l->dpid = cursor_u64(c);
	l->port = cursor_u32(c);
	l->control_addr = cursor_u32(c);
	l->guest_addr = cursor_u32(c);
	l->seen_ms = cursor_u64(c);
}

static int location_cmp(const union store_row *a, const union store_row *b)
{
	return strcmp(a->location.host, b->location.host);
}

static json_t *location_json(const union store_row *r)
{
	const struct store_location *l = &r->location;
	return json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:I}", "host", l->host, "mac", l->mac,
	                 "dpid", (json_int_t)l->dpid, "port", (json_int_t)l->port, "control_addr",
	                 addr_json(l->control_addr), "guest_addr", addr_json(l->guest_addr),
	                 "seen_ms", (json_int_t)l->seen_ms);
}

static void link_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_u64(b, r->link.dpid);
	obuf_put_u32(b, r->link.port);
	obuf_put_u64(b, r->link.peer_dpid);
	obuf_put_u32(b, r->link.peer_port);
	obuf_put_u64(b, r->link.seen_ms);
}

static void link_decode(struct cursor *c, union store_row *r)
{
	r->link.dpid = cursor_u64(c);
	r->link.port = cursor_u32(c);
	r->link.peer_dpid = cursor_u64(c);
	r->link.peer_port = cursor_u32(c);
	r->link.seen_ms = cursor_u64(c);
}

static int link_cmp(const union store_row *a, const union store_row *b)
{
	int r = cmp_u64(a->link.dpid, b->link.dpid);
	return r ? r : cmp_u64(a->link.port, b->link.port);
}

static json_t *link_json(const union store_row *r)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I}", "dpid", (json_int_t)r->link.dpid, "port",
	                 (json_int_t)r->link.port, "peer_dpid", (json_int_t)r->link.peer_dpid,
	                 "peer_port", (json_int_t)r->link.peer_port, "seen_ms",
	                 (json_int_t)r->link.seen_ms);
}

static void attestation_encode(struct obuf *b, const union store_row *r)
{
	const struct store_attestation *a = &r->attestation;
	obuf_put_str(b, a->host);
	obuf_put_u8(b, a->state);
	obuf_put_str(b, a->reason);
	obuf_put_str(b, a->ek_fp);
	obuf_put_str(b, a->measurement);
	obuf_put_u32(b, a->reset_count);
	obuf_put_u32(b, a->restart_count);
	obuf_put_u64(b, a->time_ms);
}

static void attestation_decode(struct cursor *c, union store_row *r)
{
	struct store_attestation *a = &r->attestation;
	cursor_str(c, a->host, sizeof(a->host));
	a->state = cursor_u8(c);
	cursor_str(c, a->reason, sizeof(a->reason));
	cursor_str(c, a->ek_fp, sizeof(a->ek_fp));
	cursor_str(c, a->measurement, sizeof(a->measurement));
	a->reset_count = cursor_u32(c);
	a->restart_count = cursor_u32(c);
	a->time_ms = cursor_u64(c);
}

static int attestation_cmp(const union store_row *a, const union store_row *b)
{
	return strcmp(a->attestation.host, b->attestation.host);
}

const char *store_attest_state_name(unsigned state)
{
	switch (state) {
	case STORE_ATTEST_ADMITTED:
		return "admitted";
	case STORE_ATTEST_REFUSED:
		return "refused";
	case STORE_ATTEST_REVOKED:
		return "revoked";
	}
	return "none";
}

static json_t *attestation_json(const union store_row *r)
{
	const struct store_attestation *a = &r->attestation;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "host", a->host, "state",
	                 store_attest_state_name(a->state), "reason", a->reason, "ek_fp", a->ek_fp,
	                 "measurement", a->measurement, "reset_count", (json_int_t)a->reset_count,
	                 "restart_count", (json_int_t)a->restart_count, "time_ms",
	                 (json_int_t)a->time_ms);
}

static void device_encode(struct obuf *b, const union store_row *r)
{
	const struct store_device *d = &r->device;
	obuf_put_str(b, d->mac);
	obuf_put_str(b, d->name);
	obuf_put_u32(b, d->address);
	obuf_put_u64(b, d->dpid);
	obuf_put_u32(b, d->port);
	obuf_put_u64(b, d->allowed_ms);
}

static void device_decode(struct cursor *c, union store_row *r)
{
	struct store_device *d = &r->device;
	cursor_str(c, d->mac, sizeof(d->mac));
	cursor_str(c, d->name, sizeof(d->name));
	d->address = cursor_u32(c);
	d->dpid = cursor_u64(c);
	d->port = cursor_u32(c);
	d->allowed_ms = cursor_u64(c);
}

static int device_cmp(const union store_row *a, const union store_row *b)
{
	return strcmp(a->device.mac, b->device.mac);
}

static json_t *device_json(const union store_row *r)
{
	const struct store_device *d = &r->device;
	return json_pack("{s:s, s:s, s:o, s:I, s:I, s:I}", "mac", d->mac, "name", d->name,
	                 "address", d->address ? addr_json(d->address) : json_null(), "dpid",
	                 (json_int_t)d->dpid, "port", (json_int_t)d->port, "allowed_ms",
	                 (json_int_t)d->allowed_ms);
}

static void manager_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_str(b, r->manager.host);
	obuf_put_u64(b, r->manager.since_ms);
}

static void manager_decode(struct cursor *c, union store_row *r)
{
	cursor_str(c, r->manager.host, sizeof(r->manager.host));
	r->manager.since_ms = cursor_u64(c);
}

static json_t *manager_json(const union store_row *r)
{
	return json_pack("{s:s?, s:I}", "host", r->manager.host[0] ? r->manager.host : NULL,
	                 "since_ms", (json_int_t)r->manager.since_ms);
}

static void cluster_encode(struct obuf *b, const union store_row *r)
{
	obuf_put_u64(b, r->cluster.generation);
	obuf_put_u64(b, r->cluster.from_term);
	obuf_put_u64(b, r->cluster.from_index);
	obuf_put_str(b, r->cluster.by);
}

static void cluster_decode(struct cursor *c, union store_row *r)
{
	r->cluster.generation = cursor_u64(c);
	r->cluster.from_term = cursor_u64(c);
	r->cluster.from_index = cursor_u64(c);
	cursor_str(c, r->cluster.by, sizeof(r->cluster.by));
}

static json_t *cluster_json(const union store_row *r)
{
	return json_pack("{s:I, s:I, s:I, s:s}", "generation", (json_int_t)r->cluster.generation,
	                 "from_term", (json_int_t)r->cluster.from_term, "from_index",
	                 (json_int_t)r->cluster.from_index, "by", r->cluster.by);
}

/* The policy's text is kept out of the fixed-size row: it may be large. */
static void policy_encode(struct obuf *b, const union store_row *r)
{
	const char *text = r->policy.text ? r->policy.text : "";
	obuf_put_u64(b, r->policy.epoch);
	obuf_put_u32(b, (uint32_t)strlen(text));
	obuf_put_bytes(b, text, strlen(text));
}

static void policy_decode(struct cursor *c, union store_row *r)
{
	r->policy.epoch = cursor_u64(c);
	uint32_t n = cursor_u32(c);
	const uint8_t *p = n <= STORE_POLICY_MAX ? cursor_bytes(c, n) : NULL;
	if (!p || memchr(p, '\0', n)) {
		c->failed = true;
		r->policy.text = NULL;
		return;
	}
	r->policy.text = strndup((const char *)p, n);
	if (!r->policy.text)
		c->failed = true;
}

static json_t *policy_json(const union store_row *r)
{
	return json_pack("{s:I, s:s}", "epoch", (json_int_t)r->policy.epoch, "text",
	                 r->policy.text ? r->policy.text : "");
}

static const struct table_ops ops[STORE_TABLE_MAX] = {
    [STORE_CLUSTER] = {"cluster", cluster_encode, cluster_decode, NULL, cluster_json},
    [STORE_MEMBERS] = {"members", member_encode, member_decode, member_cmp, member_json},
    [STORE_ADMISSIONS] = {"admissions", admission_encode, admission_decode, admission_cmp,
                          admission_json},
    [STORE_TRUSTED] = {"trusted", trusted_encode, trusted_decode, trusted_cmp, trusted_json},
    [STORE_POLICY] = {"policy", policy_encode, policy_decode, NULL, policy_json},
    [STORE_NAT_BLOCKS] = {"nat_blocks", block_encode, block_decode, block_cmp, block_json},
    [STORE_NAT_MAPPINGS] = {"nat_mappings", mapping_encode, mapping_decode, mapping_cmp,
                            mapping_json},
    [STORE_LEASES] = {"leases", lease_encode, lease_decode, lease_cmp, lease_json},
    [STORE_CONFLICTS] = {"conflicts", conflict_encode, conflict_decode, conflict_cmp,
                         conflict_json},
    [STORE_LOCATIONS] = {"locations", location_encode, location_decode, location_cmp,
                         location_json},
    [STORE_LINKS] = {"links", link_encode, link_decode, link_cmp, link_json},
    [STORE_ATTESTATIONS] = {"attestations", attestation_encode, attestation_decode, attestation_cmp,
                            attestation_json},
    [STORE_DEVICES] = {"devices", device_encode, device_decode, device_cmp, device_json},
    [STORE_MANAGER] = {"manager", manager_encode, manager_decode, NULL, manager_json},
};

static bool valid_table(unsigned t)
{
	return t >= 1 && t < STORE_TABLE_MAX;
}

static bool single_row(unsigned t)
{
	return t == STORE_CLUSTER || t == STORE_POLICY || t == STORE_MANAGER;
}

const char *store_table_name(enum store_table table)
{
	return valid_table(table) ? ops[table].name : NULL;
}

int store_table_from_name(const char *name)
{
	for (int t = 1; t < STORE_TABLE_MAX; t++)
		if (strcmp(ops[t].name, name) == 0)
			return t;
	return -ENOENT;
}

/* ---- sorted row arrays ---- */

/* Index of the row with @key's key, or where it would go; *found says
 * which. */
static size_t table_find(const struct table *t, enum store_table id, const union store_row *key,
                         bool *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ops[id].cmp(&t->rows[mid], key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static const union store_row *table_get(const struct store_state *s, enum store_table id,
                                        const union store_row *key)
{
	bool found;
	size_t i = table_find(&s->tables[id], id, key, &found);
	return found ? &s->tables[id].rows[i] : NULL;
}

/* Inserts or replaces the row with @row's key. */
static int table_put(struct store_state *s, enum store_table id, const union store_row *row)
{
	struct table *t = &s->tables[id];
	bool found;
	size_t i = table_find(t, id, row, &found);
	if (found) {
		t->rows[i] = *row;
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		union store_row *rows = realloc(t->rows, cap * sizeof(*rows));
		if (!rows)
			return -ENOMEM;
		t->rows = rows;
		t->cap = cap;
	}
	memmove(&t->rows[i + 1], &t->rows[i], (t->n - i) * sizeof(*t->rows));
	t->rows[i] = *row;
	t->n++;
	return 0;
}

static void table_del(struct store_state *s, enum store_table id, const union store_row *key)
{
	struct table *t = &s->tables[id];
	bool found;
	size_t i = table_find(t, id, key, &found);
	if (!found)
		return;
	memmove(&t->rows[i], &t->rows[i + 1], (t->n - i - 1) * sizeof(*t->rows));
	t->n--;
}

/* ---- state ---- */

int store_state_new(struct store_state **ret_state)
{
	struct store_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->next_conflict = 1;
	*ret_state = s;
	return 0;
}

static void state_clear(struct store_state *s)
{
	for (int t = 0; t < STORE_TABLE_MAX; t++)
		free(s->tables[t].rows);
	free(s->policy.text);
}

void store_state_free(struct store_state *s)
{
	if (!s)
		return;
	state_clear(s);
	free(s);
}

const struct store_cluster *store_cluster(const struct store_state *s)
{
	return &s->cluster;
}

const struct store_policy *store_policy(const struct store_state *s)
{
	return &s->policy;
}

size_t store_count(const struct store_state *s, enum store_table table)
{
	if (single_row(table))
		return 1;
	return valid_table(table) ? s->tables[table].n : 0;
}

const void *store_row(const struct store_state *s, enum store_table table, size_t i)
{
	if (table == STORE_CLUSTER)
		return i == 0 ? &s->cluster : NULL;
	if (table == STORE_POLICY)
		return i == 0 ? &s->policy : NULL;
	if (table == STORE_MANAGER)
		return i == 0 ? &s->manager : NULL;
	if (!valid_table(table) || i >= s->tables[table].n)
		return NULL;
	return &s->tables[table].rows[i];
}

const struct store_member *store_member_find(const struct store_state *s, uint64_t id)
{
	union store_row key = {.member.id = id};
	const union store_row *r = table_get(s, STORE_MEMBERS, &key);
	return r ? &r->member : NULL;
}

const struct store_admission *store_admission_find(const struct store_state *s, const char *host)
{
	union store_row key = {0};
	snprintf(key.admission.host, sizeof(key.admission.host), "%s", host);
	const union store_row *r = table_get(s, STORE_ADMISSIONS, &key);
	return r ? &r->admission : NULL;
}

const struct store_location *store_location_find(const struct store_state *s, const char *host)
{
	union store_row key = {0};
	snprintf(key.location.host, sizeof(key.location.host), "%s", host);
	const union store_row *r = table_get(s, STORE_LOCATIONS, &key);
	return r ? &r->location : NULL;
}

const struct store_attestation *store_attestation_find(const struct store_state *s,
                                                       const char *host)
{
	union store_row key = {0};
	snprintf(key.attestation.host, sizeof(key.attestation.host), "%s", host);
	const union store_row *r = table_get(s, STORE_ATTESTATIONS, &key);
	return r ? &r->attestation : NULL;
}

const struct store_device *store_device_find(const struct store_state *s, const char *mac)
{
	union store_row key = {0};
	snprintf(key.device.mac, sizeof(key.device.mac), "%s", mac);
	const union store_row *r = table_get(s, STORE_DEVICES, &key);
	return r ? &r->device : NULL;
}

const struct store_manager *store_manager(const struct store_state *s)
{
	return &s->manager;
}

bool store_device_mac_valid(const char *mac)
{
	if (strlen(mac) != 17)
		return false;
	unsigned first = 0, any = 0;
	for (int i = 0; i < 17; i++) {
		char ch = mac[i];
		if (i % 3 == 2) {
			if (ch != ':')
				return false;
			continue;
		}
		if (!isdigit((unsigned char)ch) && !(ch >= 'a' && ch <= 'f'))
			return false;
		unsigned v = (unsigned)(isdigit((unsigned char)ch) ? ch - '0' : ch - 'a' + 10);
		if (i == 1)
			first = v;
		any |= v;
	}
	return any && !(first & 1); /* the group bit: multicast */
}

bool store_device_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= STORE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return false;
	return true;
}

const struct store_member *store_member_find_name(const struct store_state *s, const char *name)
{
	const struct table *t = &s->tables[STORE_MEMBERS];
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->rows[i].member.name, name) == 0)
			return &t->rows[i].member;
	return NULL;
}

/* ---- commands ---- */

int store_cmd_encode(const struct store_cmd *cmd, uint8_t **ret_data, size_t *ret_len)
{
	if (!valid_table(cmd->table) || (cmd->op != STORE_PUT && cmd->op != STORE_DELETE))
		return -EINVAL;
	struct obuf b = {0};
	obuf_put_u16(&b, COMMAND_MAGIC);
	obuf_put_u8(&b, STORE_ENCODING_VERSION);
	obuf_put_u8(&b, cmd->table);
	obuf_put_u8(&b, cmd->op);
	obuf_put_u64(&b, cmd->time_ms);
	ops[cmd->table].encode(&b, &cmd->row);
	return obuf_finish(&b, ret_data, ret_len);
}

int store_cmd_decode(const void *data, size_t len, struct store_cmd *ret_cmd, char *error,
                     size_t error_size)
{
	struct cursor c = cursor_init(data, len);
	struct store_cmd cmd = {0};
	const char *why = NULL;

	uint16_t magic = cursor_u16(&c);
	uint8_t version = cursor_u8(&c);
	cmd.table = cursor_u8(&c);
	cmd.op = cursor_u8(&c);
	cmd.time_ms = cursor_u64(&c);
	if (!cursor_ok(&c))
		why = "header: truncated";
	else if (magic != COMMAND_MAGIC)
		why = "header: bad magic";
	else if (version == 0 || version > STORE_ENCODING_VERSION)
		why = "header: unknown encoding version";
	else if (!valid_table(cmd.table))
		why = "header: unknown table";
	else if (cmd.op != STORE_PUT && cmd.op != STORE_DELETE)
		why = "header: unknown operation";
	if (why) {
		snprintf(error, error_size, "command %s", why);
		return -EBADMSG;
	}
	ops[cmd.table].decode(&c, &cmd.row);
	/* Up to 7 zero bytes pad a command to 8 bytes in the Raft log. */
	bool padding = c.left < 8;
	for (size_t i = 0; padding && i < c.left; i++)
		padding = c.p[i] == 0;
	if (!cursor_ok(&c) || !padding) {
		snprintf(error, error_size, "command for table %s: %s row", ops[cmd.table].name,
		         cursor_ok(&c) ? "trailing bytes after the" : "truncated or malformed");
		store_cmd_done(&cmd);
		return -EBADMSG;
	}
	*ret_cmd = cmd;
	return 0;
}

void store_cmd_done(struct store_cmd *cmd)
{
	if (cmd && cmd->table == STORE_POLICY) {
		free(cmd->row.policy.text);
		cmd->row.policy.text = NULL;
	}
}

/* ---- apply: one function per table, each checks before it changes ---- */

static int apply_cluster(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const struct store_cluster *c = &cmd->row.cluster;
	if (cmd->op != STORE_PUT) {
		reject(res, "the cluster row cannot be deleted");
		return 0;
	}
	if (c->generation != s->cluster.generation + 1) {
		reject(res, "generation %llu does not follow %llu",
		       (unsigned long long)c->generation,
		       (unsigned long long)s->cluster.generation);
		return 0;
	}
	s->cluster = *c;
	res->value = c->generation;
	return 0;
}

static int apply_member(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct store_member *m = &cmd->row.member;
	const struct store_member *old = store_member_find(s, m->id);
	if (cmd->op == STORE_DELETE) {
		if (!old) {
			reject(res, "no member with id %llu", (unsigned long long)m->id);
			return 0;
		}
		table_del(s, STORE_MEMBERS, &cmd->row);
		return 0;
	}
	if (m->id == 0 || !m->name[0] || !m->address[0]) {
		reject(res, "a member needs an id, a name and an address");
		return 0;
	}
	if (m->role > STORE_ROLE_SPARE) {
		reject(res, "unknown role %u", m->role);
		return 0;
	}
	const struct store_member *same_name = store_member_find_name(s, m->name);
	if (same_name && same_name->id != m->id) {
		reject(res, "the name %s belongs to member %llu", m->name,
		       (unsigned long long)same_name->id);
		return 0;
	}
	for (size_t i = 0; i < s->tables[STORE_MEMBERS].n; i++) {
		const struct store_member *o = &s->tables[STORE_MEMBERS].rows[i].member;
		if (o->id != m->id && strcmp(o->address, m->address) == 0) {
			reject(res, "the address %s belongs to member %s", m->address, o->name);
			return 0;
		}
	}
	return table_put(s, STORE_MEMBERS, &cmd->row);
}

static int apply_simple(struct store_state *s, enum store_table t, const struct store_cmd *cmd,
                        struct store_result *res, const char *what)
{
	const union store_row *old = table_get(s, t, &cmd->row);
	if (cmd->op == STORE_DELETE) {
		if (!old) {
			reject(res, "no such %s", what);
			return 0;
		}
		table_del(s, t, &cmd->row);
		return 0;
	}
	return table_put(s, t, &cmd->row);
}

static int apply_admission(struct store_state *s, const struct store_cmd *cmd,
                           struct store_result *res)
{
	if (cmd->op == STORE_PUT && !cmd->row.admission.host[0]) {
		reject(res, "an admission needs a host");
		return 0;
	}
	return apply_simple(s, STORE_ADMISSIONS, cmd, res, "admission");
}

static int apply_trusted(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const char *d = cmd->row.trusted.digest;
	if (!is_hex_digest(d)) {
		reject(res, "a digest is 64 lowercase hex digits (SHA-256)");
		return 0;
	}
	if (cmd->op == STORE_PUT && table_get(s, STORE_TRUSTED, &cmd->row)) {
		reject(res, "%.16s... is already trusted", d);
		return 0;
	}
	return apply_simple(s, STORE_TRUSTED, cmd, res, "trusted measurement");
}

static int apply_policy(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct store_policy *p = &cmd->row.policy;
	if (cmd->op != STORE_PUT) {
		reject(res, "the policy cannot be deleted, only replaced");
		return 0;
	}
	if (p->epoch != s->policy.epoch) {
		reject(res, "the edit was made on epoch %llu, but the policy is at epoch %llu",
		       (unsigned long long)p->epoch, (unsigned long long)s->policy.epoch);
		return 0;
	}
	char *text = strdup(p->text ? p->text : "");
	if (!text)
		return -ENOMEM;
	free(s->policy.text);
	s->policy.text = text;
	s->policy.epoch++;
	res->value = s->policy.epoch;
	return 0;
}

/* The block that overlaps [start, start+size), if any. Blocks are aligned
 * powers of two, so overlapping means one contains the other. */
static const struct store_nat_block *block_overlap(const struct store_state *s, uint32_t start,
                                                   uint32_t size)
{
	const struct table *t = &s->tables[STORE_NAT_BLOCKS];
	for (size_t i = 0; i < t->n; i++) {
		const struct store_nat_block *b = &t->rows[i].nat_block;
		if (b->start < start + size && start < (uint32_t)b->start + b->size)
			return b;
	}
	return NULL;
}

static int apply_nat_block(struct store_state *s, const struct store_cmd *cmd,
                           struct store_result *res)
{
	const struct store_nat_block *b = &cmd->row.nat_block;
	const union store_row *old = table_get(s, STORE_NAT_BLOCKS, &cmd->row);
	if (cmd->op == STORE_DELETE) {
		if (!old || old->nat_block.owner != b->owner) {
			reject(res, "member %llu holds no block at %u",
			       (unsigned long long)b->owner, b->start);
			return 0;
		}
		table_del(s, STORE_NAT_BLOCKS, &cmd->row);
		return 0;
	}
	if (b->size == 0 || (b->size & (b->size - 1)) || b->start % b->size) {
		reject(res, "a block's size is a power of two and its start a multiple of it");
		return 0;
	}
	if (b->owner == 0) {
		reject(res, "a block needs an owner");
		return 0;
	}
	const struct store_nat_block *other = block_overlap(s, b->start, b->size);
	if (other) {
		reject(res, "ports %u-%u overlap the block %u-%u of member %llu", b->start,
		       b->start + b->size - 1, other->start, other->start + other->size - 1,
		       (unsigned long long)other->owner);
		return 0;
	}
	return table_put(s, STORE_NAT_BLOCKS, &cmd->row);
}

static int apply_nat_mapping(struct store_state *s, const struct store_cmd *cmd,
                             struct store_result *res)
{
	const struct store_nat_mapping *m = &cmd->row.nat_mapping;
	const union store_row *old = table_get(s, STORE_NAT_MAPPINGS, &cmd->row);
	if (m->proto != 6 && m->proto != 17) {
		reject(res, "a mapping is for TCP (6) or UDP (17)");
		return 0;
	}
	if (cmd->op == STORE_PUT && old && old->nat_mapping.owner != m->owner) {
		reject(res, "public port %u/%s is mapped by member %llu", m->public_port,
		       m->proto == 6 ? "tcp" : "udp", (unsigned long long)old->nat_mapping.owner);
		return 0;
	}
	const struct store_nat_block *b = block_overlap(s, m->public_port, 1);
	if (cmd->op == STORE_PUT && b && b->owner != m->owner) {
		reject(res, "public port %u is in the block %u-%u of member %llu", m->public_port,
		       b->start, b->start + b->size - 1, (unsigned long long)b->owner);
		return 0;
	}
	return apply_simple(s, STORE_NAT_MAPPINGS, cmd, res, "mapping");
}

static const struct store_lease *lease_of_addr(const struct store_state *s, uint32_t addr)
{
	const struct table *t = &s->tables[STORE_LEASES];
	for (size_t i = 0; i < t->n; i++)
		if (t->rows[i].lease.addr == addr)
			return &t->rows[i].lease;
	return NULL;
}

static int apply_lease(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct store_lease *l = &cmd->row.lease;
	if (cmd->op == STORE_PUT) {
		const struct store_lease *other = lease_of_addr(s, l->addr);
		/* An expired lease gives its address up; "expired" is judged
		 * by the command's own clock, so every replica agrees. */
		if (other && strcmp(other->mac, l->mac) != 0 && other->expires_ms > cmd->time_ms) {
			reject(res, "the address is leased to %s", other->mac);
			return 0;
		}
		if (other && strcmp(other->mac, l->mac) != 0) {
			union store_row key;
			memcpy(&key.lease, other, sizeof(*other));
			table_del(s, STORE_LEASES, &key);
		}
	}
	return apply_simple(s, STORE_LEASES, cmd, res, "lease");
}

static int apply_conflict(struct store_state *s, const struct store_cmd *cmd,
                          struct store_result *res)
{
	if (cmd->op == STORE_DELETE)
		return apply_simple(s, STORE_CONFLICTS, cmd, res, "conflict");
	union store_row row = cmd->row;
	row.conflict.id = s->next_conflict;
	int r = table_put(s, STORE_CONFLICTS, &row);
	if (r == 0) {
		res->value = s->next_conflict++;
	}
	return r;
}

static int apply_location(struct store_state *s, const struct store_cmd *cmd,
                          struct store_result *res)
{
	const struct store_location *l = &cmd->row.location;
	if (cmd->op == STORE_PUT) {
		if (!l->host[0] || !l->dpid || !l->port) {
			reject(res, "a location needs a host, a switch and a port");
			return 0;
		}
		/* One host per port: a host seen on another's port replaces it. */
		for (size_t i = 0; i < s->tables[STORE_LOCATIONS].n; i++) {
			const struct store_location *o =
			    &s->tables[STORE_LOCATIONS].rows[i].location;
			if (strcmp(o->host, l->host) != 0 && o->dpid == l->dpid &&
			    o->port == l->port) {
				table_del(s, STORE_LOCATIONS, &s->tables[STORE_LOCATIONS].rows[i]);
				break;
			}
		}
	}
	return apply_simple(s, STORE_LOCATIONS, cmd, res, "location");
}

static int apply_link(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct store_link *l = &cmd->row.link;
	if (cmd->op == STORE_PUT &&
	    (!l->dpid || !l->port || !l->peer_dpid || !l->peer_port || l->dpid == l->peer_dpid)) {
		reject(res, "a link joins two ports of two different switches");
		return 0;
	}
	return apply_simple(s, STORE_LINKS, cmd, res, "link");
}

static int apply_attestation(struct store_state *s, const struct store_cmd *cmd,
                             struct store_result *res)
{
	const struct store_attestation *a = &cmd->row.attestation;
	if (cmd->op == STORE_PUT &&
	    (!a->host[0] || a->state < STORE_ATTEST_ADMITTED || a->state > STORE_ATTEST_REVOKED)) {
		reject(res, "an attestation needs a host and a state (admitted, refused, revoked)");
		return 0;
	}
	if (cmd->op == STORE_PUT && a->measurement[0] && !is_hex_digest(a->measurement)) {
		reject(res, "a measurement is 64 lowercase hex digits (SHA-256)");
		return 0;
	}
	return apply_simple(s, STORE_ATTESTATIONS, cmd, res, "attestation");
}

static int apply_device(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct store_device *d = &cmd->row.device;
	if (!store_device_mac_valid(d->mac)) {
		reject(res, "a device's MAC is six lowercase hex pairs (xx:xx:xx:xx:xx:xx), "
		            "unicast and not all zero");
		return 0;
	}
	if (cmd->op == STORE_PUT) {
		if (!store_device_name_valid(d->name)) {
			reject(res, "a device's name is 1 to %d letters, digits, '.', '_' or '-'",
			       STORE_NAME_MAX - 1);
			return 0;
		}
		/* One device per address: the one just seen there has it. */
		struct table *t = &s->tables[STORE_DEVICES];
		for (size_t i = 0; d->address && i < t->n; i++)
			if (t->rows[i].device.address == d->address &&
			    strcmp(t->rows[i].device.mac, d->mac) != 0)
				t->rows[i].device.address = 0;
	}
	return apply_simple(s, STORE_DEVICES, cmd, res, "device");
}

static int apply_manager(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const struct store_manager *m = &cmd->row.manager;
	if (cmd->op == STORE_DELETE) {
		s->manager = (struct store_manager){0};
		return 0;
	}
	if (!m->host[0] || !store_member_find_name(s, m->host)) {
		reject(res, "the manager must be a member; \"%s\" is not", m->host);
		return 0;
	}
	s->manager = *m;
	return 0;
}

int store_state_apply(struct store_state *s, const struct store_cmd *cmd,
                      struct store_result *ret_result)
{
	struct store_result res = {.applied = true};
	int r;
	switch (cmd->table) {
	case STORE_CLUSTER:
		r = apply_cluster(s, cmd, &res);
		break;
	case STORE_MEMBERS:
		r = apply_member(s, cmd, &res);
		break;
	case STORE_ADMISSIONS:
		r = apply_admission(s, cmd, &res);
		break;
	case STORE_TRUSTED:
		r = apply_trusted(s, cmd, &res);
		break;
	case STORE_POLICY:
		r = apply_policy(s, cmd, &res);
		break;
	case STORE_NAT_BLOCKS:
		r = apply_nat_block(s, cmd, &res);
		break;
	case STORE_NAT_MAPPINGS:
		r = apply_nat_mapping(s, cmd, &res);
		break;
	case STORE_LEASES:
		r = apply_lease(s, cmd, &res);
		break;
	case STORE_CONFLICTS:
		r = apply_conflict(s, cmd, &res);
		break;
	case STORE_LOCATIONS:
		r = apply_location(s, cmd, &res);
		break;
	case STORE_LINKS:
		r = apply_link(s, cmd, &res);
		break;
	case STORE_ATTESTATIONS:
		r = apply_attestation(s, cmd, &res);
		break;
	case STORE_DEVICES:
		r = apply_device(s, cmd, &res);
		break;
	case STORE_MANAGER:
		r = apply_manager(s, cmd, &res);
		break;
	default:
		reject(&res, "unknown table %u", cmd->table);
		r = 0;
	}
	if (r < 0)
		return r;
	*ret_result = res;
	return 0;
}

int store_state_apply_encoded(struct store_state *s, const void *data, size_t len,
                              struct store_result *ret_result, char *error, size_t error_size)
{
	struct store_cmd cmd;
	int r = store_cmd_decode(data, len, &cmd, error, error_size);
	if (r < 0)
		return r;
	r = store_state_apply(s, &cmd, ret_result);
	store_cmd_done(&cmd);
	return r;
}

/* ---- snapshots ---- */

int store_state_snapshot(const struct store_state *s, uint8_t **ret_data, size_t *ret_len)
{
	struct obuf b = {0};
	obuf_put_u32(&b, SNAPSHOT_MAGIC);
	obuf_put_u8(&b, STORE_ENCODING_VERSION);
	obuf_put_u64(&b, s->next_conflict);
	cluster_encode(&b, (const union store_row *)&s->cluster);
	union store_row policy = {.policy = s->policy};
	policy_encode(&b, &policy);
	for (int t = 1; t < STORE_TABLE_MAX; t++) {
		if (t == STORE_MANAGER) {
			obuf_put_u8(&b, (uint8_t)t);
			manager_encode(&b, (const union store_row *)&s->manager);
			continue;
		}
		if (single_row(t))
			continue;
		obuf_put_u8(&b, (uint8_t)t);
		obuf_put_u32(&b, (uint32_t)s->tables[t].n);
		for (size_t i = 0; i < s->tables[t].n; i++)
			ops[t].encode(&b, &s->tables[t].rows[i]);
	}
	return obuf_finish(&b, ret_data, ret_len);
}

static int restore_into(struct store_state *n, struct cursor *c, const char **why)
{
	if (cursor_u32(c) != SNAPSHOT_MAGIC) {
		*why = "bad magic";
		return -EBADMSG;
	}
	uint8_t version = cursor_u8(c);
	if (version == 0 || version > STORE_ENCODING_VERSION) {
		*why = "unknown encoding version";
		return -EBADMSG;
	}
	n->next_conflict = cursor_u64(c);
	union store_row row = {0};
	cluster_decode(c, &row);
	n->cluster = row.cluster;
	policy_decode(c, &row);
	n->policy = row.policy;
	for (int t = 1; t < STORE_TABLE_MAX && cursor_ok(c); t++) {
		if (single_row(t) && t != STORE_MANAGER)
			continue;
		/* Encoding 1 had no topology tables: they start empty. */
		if (version < 2 && t >= STORE_LOCATIONS)
			break;
		/* Nor had encoding 2 the attestations, devices and manager. */
		if (version < 3 && t >= STORE_ATTESTATIONS)
			break;
		if (cursor_u8(c) != t) {
			*why = "tables out of order";
			return -EBADMSG;
		}
		if (t == STORE_MANAGER) {
			manager_decode(c, &row);
			n->manager = row.manager;
			continue;
		}
		uint32_t count = cursor_u32(c);
		for (uint32_t i = 0; i < count && cursor_ok(c); i++) {
			ops[t].decode(c, &row);
			bool found;
			size_t at = table_find(&n->tables[t], t, &row, &found);
			/* Rows are written in key order, once each. */
			if (found || at != n->tables[t].n) {
				*why = "rows out of order or repeated";
				return -EBADMSG;
			}
			if (cursor_ok(c) && table_put(n, t, &row) < 0)
				return -ENOMEM;
		}
	}
	if (!cursor_ok(c)) {
		*why = "truncated or malformed";
		return -EBADMSG;
	}
	if (c->left) {
		*why = "trailing bytes";
		return -EBADMSG;
	}
	return 0;
}

int store_state_restore(struct store_state *s, const void *data, size_t len, char *error,
                        size_t error_size)
{
	struct store_state *n;
	int r = store_state_new(&n);
	if (r < 0)
		return r;
	struct cursor c = cursor_init(data, len);
	const char *why = "out of memory";
	r = restore_into(n, &c, &why);
	if (r < 0) {
		snprintf(error, error_size, "snapshot: %s", why);
		store_state_free(n);
		return r;
	}
	state_clear(s);
	*s = *n;
	free(n);
	return 0;
}

/* ---- dump ---- */

json_t *store_table_dump(const struct store_state *s, enum store_table table)
{
	if (table == STORE_CLUSTER)
		return cluster_json((const union store_row *)&s->cluster);
	if (table == STORE_POLICY) {
		union store_row policy = {.policy = s->policy};
		return policy_json(&policy);
	}
	if (table == STORE_MANAGER)
		return manager_json((const union store_row *)&s->manager);
	if (!valid_table(table))
		return NULL;
	json_t *a = json_array();
	for (size_t i = 0; i < s->tables[table].n; i++)
		json_array_append_new(a, ops[table].to_json(&s->tables[table].rows[i]));
	return a;
}

json_t *store_state_dump(const struct store_state *s)
{
	json_t *o = json_object();
	for (int t = 1; t < STORE_TABLE_MAX; t++)
		json_object_set_new(o, ops[t].name, store_table_dump(s, t));
	return o;
}
