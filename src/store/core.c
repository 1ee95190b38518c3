/* The store's own tables: the cluster's generation, its members, and the
 * conflicts of merges; and, until the policy and DHCP services exist and
 * take them over, the policy and the leases. Each with its encoding, apply
 * (checks before it changes), merge rule and JSON. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "state-internal.h"
#include "lib/addr.h"

static enum store_merge conflict(char **ret_reason, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum store_merge conflict(char **ret_reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_setv(ret_reason, 0, fmt, ap);
	va_end(ap);
	return STORE_MERGE_CONFLICT;
}

/* Membership and generations belong to the cluster that is; a conflict is
 * the new cluster's own record. */
static enum store_merge merge_skip(const struct store_state *s, struct store_cmd *cmd,
                                   char **ret_reason)
{
	(void)s, (void)cmd, (void)ret_reason;
	return STORE_MERGE_SKIP;
}

/* ---- cluster ---- */

static void cluster_encode(struct obuf *b, const void *row)
{
	const struct store_cluster *c = row;
	obuf_put_u64(b, c->generation);
	obuf_put_u64(b, c->from_term);
	obuf_put_u64(b, c->from_index);
	obuf_put_str(b, c->by);
}

static void cluster_decode(struct cursor *c, void *row)
{
	struct store_cluster *r = row;
	r->generation = cursor_u64(c);
	r->from_term = cursor_u64(c);
	r->from_index = cursor_u64(c);
	cursor_str(c, r->by, sizeof(r->by));
}

static json_t *cluster_json(const void *row)
{
	const struct store_cluster *c = row;
	return json_pack("{s:I, s:I, s:I, s:s}", "generation", (json_int_t)c->generation,
	                 "from_term", (json_int_t)c->from_term, "from_index",
	                 (json_int_t)c->from_index, "by", c->by);
}

static int cluster_apply(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const struct store_cluster *c = STORE_CMD_ROW(cmd, const struct store_cluster);
	if (cmd->op != STORE_PUT) {
		store_reject(res, "the cluster row cannot be deleted");
		return 0;
	}
	if (c->generation != store_cluster(s)->generation + 1) {
		store_reject(res, "generation %llu does not follow %llu",
		             (unsigned long long)c->generation,
		             (unsigned long long)store_cluster(s)->generation);
		return 0;
	}
	int r = store_table_put(s, STORE_CLUSTER, c);
	if (r == 0)
		res->value = c->generation;
	return r;
}

static const struct store_table cluster_table = {
    .id = STORE_CLUSTER,
    .name = "cluster",
    .version = 1,
    .row_size = sizeof(struct store_cluster),
    .single = true,
    .encode = cluster_encode,
    .decode = cluster_decode,
    .apply = cluster_apply,
    .merge = merge_skip,
    .to_json = cluster_json,
};

/* ---- members ---- */

static void member_encode(struct obuf *b, const void *row)
{
	const struct store_member *m = row;
	obuf_put_u64(b, m->id);
	obuf_put_str(b, m->name);
	obuf_put_str(b, m->address);
	obuf_put_str(b, m->peer);
	obuf_put_u8(b, m->role);
	obuf_put_str(b, m->raft_version);
	obuf_put_u64(b, m->joined_ms);
}

static void member_decode(struct cursor *c, void *row)
{
	struct store_member *m = row;
	m->id = cursor_u64(c);
	cursor_str(c, m->name, sizeof(m->name));
	cursor_str(c, m->address, sizeof(m->address));
	cursor_str(c, m->peer, sizeof(m->peer));
	m->role = cursor_u8(c);
	cursor_str(c, m->raft_version, sizeof(m->raft_version));
	m->joined_ms = cursor_u64(c);
}

static int member_cmp(const void *a, const void *b)
{
	return store_cmp_u64(((const struct store_member *)a)->id,
	                     ((const struct store_member *)b)->id);
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

static json_t *member_json(const void *row)
{
	const struct store_member *m = row;
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I}", "id", (json_int_t)m->id, "name",
	                 m->name, "address", m->address, "peer", m->peer, "role",
	                 store_role_name(m->role), "raft_version", m->raft_version, "joined_ms",
	                 (json_int_t)m->joined_ms);
}

const struct store_member *store_member_find(const struct store_state *s, uint64_t id)
{
	struct store_member key = {.id = id};
	return store_table_get(s, STORE_MEMBERS, &key);
}

const struct store_member *store_member_find_name(const struct store_state *s, const char *name)
{
	for (size_t i = 0; i < store_count(s, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(s, STORE_MEMBERS, i);
		if (strcmp(m->name, name) == 0)
			return m;
	}
	return NULL;
}

static int member_apply(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct store_member *m = STORE_CMD_ROW(cmd, const struct store_member);
	if (cmd->op == STORE_DELETE) {
		if (!store_member_find(s, m->id)) {
			store_reject(res, "no member with id %llu", (unsigned long long)m->id);
			return 0;
		}
		store_table_del(s, STORE_MEMBERS, m);
		return 0;
	}
	if (m->id == 0 || !m->name[0] || !m->address[0]) {
		store_reject(res, "a member needs an id, a name and an address");
		return 0;
	}
	if (m->role > STORE_ROLE_SPARE) {
		store_reject(res, "unknown role %u", m->role);
		return 0;
	}
	const struct store_member *same_name = store_member_find_name(s, m->name);
	if (same_name && same_name->id != m->id) {
		store_reject(res, "the name %s belongs to member %llu", m->name,
		             (unsigned long long)same_name->id);
		return 0;
	}
	for (size_t i = 0; i < store_count(s, STORE_MEMBERS); i++) {
		const struct store_member *o = store_row(s, STORE_MEMBERS, i);
		if (o->id != m->id && strcmp(o->address, m->address) == 0) {
			store_reject(res, "the address %s belongs to member %s", m->address,
			             o->name);
			return 0;
		}
	}
	return store_table_put(s, STORE_MEMBERS, m);
}

static const struct store_table members_table = {
    .id = STORE_MEMBERS,
    .name = "members",
    .version = 1,
    .row_size = sizeof(struct store_member),
    .cmp = member_cmp,
    .encode = member_encode,
    .decode = member_decode,
    .apply = member_apply,
    .merge = merge_skip,
    .to_json = member_json,
};

/* ---- policy (the policy service will take it over) ---- */

/* A policy's text is kept out of the fixed-size row: it may be large. */
static void text_encode(struct obuf *b, const char *text)
{
	if (!text)
		text = "";
	obuf_put_u32(b, (uint32_t)strlen(text));
	obuf_put_bytes(b, text, strlen(text));
}

static char *text_decode(struct cursor *c)
{
	uint32_t n = cursor_u32(c);
	const uint8_t *t = n <= STORE_POLICY_MAX ? cursor_bytes(c, n) : NULL;
	char *text = t && !memchr(t, '\0', n) ? strndup((const char *)t, n) : NULL;
	if (!text)
		c->failed = true;
	return text;
}

static void policy_encode(struct obuf *b, const void *row)
{
	const struct store_policy *p = row;
	obuf_put_u64(b, p->epoch);
	text_encode(b, p->text);
}

static void policy_decode(struct cursor *c, void *row)
{
	struct store_policy *p = row;
	p->epoch = cursor_u64(c);
	p->text = text_decode(c);
}

static json_t *policy_json(const void *row)
{
	const struct store_policy *p = row;
	return json_pack("{s:I, s:s}", "epoch", (json_int_t)p->epoch, "text",
	                 p->text ? p->text : "");
}

static void policy_release(void *row)
{
	struct store_policy *p = row;
	free(p->text);
	p->text = NULL;
}

static int policy_apply(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct store_policy *p = STORE_CMD_ROW(cmd, const struct store_policy);
	uint64_t epoch = store_policy(s)->epoch;
	if (cmd->op != STORE_PUT) {
		store_reject(res, "the policy cannot be deleted, only replaced");
		return 0;
	}
	if (p->epoch != epoch) {
		store_reject(res,
		             "the edit was made on epoch %llu, but the policy is at epoch %llu",
		             (unsigned long long)p->epoch, (unsigned long long)epoch);
		return 0;
	}
	/* The new epoch is pending beside the active one: the one before it,
	 * or, when it replaces an epoch still pending, the same as before. */
	const struct store_policy_epochs *e = store_policy_epochs(s);
	const char *active_text = NULL;
	uint64_t active = store_policy_active(s, &active_text);
	/* Its number's two low bits are its stamp in packets: never the
	 * active epoch's, nor, after an activation, the one it replaced. */
	uint64_t n = epoch + 1;
	while ((n & 3) == (active & 3) || (!e->pending && (n & 3) == (e->other & 3)))
		n++;
	struct store_policy next = {.epoch = n, .text = strdup(p->text ? p->text : "")};
	struct store_policy_epochs ne = {
	    .pending = next.epoch,
	    .other = active,
	    .other_text = strdup(active_text ? active_text : ""),
	    .since_ms = cmd->time_ms,
	    .activated_ms = e->activated_ms,
	};
	if (!next.text || !ne.other_text || store_table_put(s, STORE_POLICY_EPOCHS, &ne) < 0) {
		free(next.text);
		free(ne.other_text);
		return -ENOMEM;
	}
	if (store_table_put(s, STORE_POLICY, &next) < 0) {
		free(next.text);
		return -ENOMEM;
	}
	res->value = next.epoch;
	return 0;
}

static enum store_merge policy_merge(const struct store_state *s, struct store_cmd *cmd,
                                     char **ret_reason)
{
	const struct store_policy *p = STORE_CMD_ROW(cmd, const struct store_policy);
	if (p->epoch == store_policy(s)->epoch)
		return STORE_MERGE_APPLY;
	return conflict(ret_reason,
	                "a policy edit made on epoch %llu meets epoch %llu; review it and "
	                "apply it again by hand",
	                (unsigned long long)p->epoch, (unsigned long long)store_policy(s)->epoch);
}

static const struct store_table policy_table = {
    .id = STORE_POLICY,
    .name = "policy",
    .version = 1,
    .row_size = sizeof(struct store_policy),
    .single = true,
    .encode = policy_encode,
    .decode = policy_decode,
    .apply = policy_apply,
    .merge = policy_merge,
    .to_json = policy_json,
    .release = policy_release,
};

/* ---- the epochs of a change of policy, and who installed which ---- */

static void epochs_encode(struct obuf *b, const void *row)
{
	const struct store_policy_epochs *e = row;
	obuf_put_u64(b, e->pending);
	obuf_put_u64(b, e->other);
	obuf_put_u64(b, e->since_ms);
	obuf_put_u64(b, e->activated_ms);
	text_encode(b, e->other_text); /* last: a row that fails to decode owns nothing */
}

static void epochs_decode(struct cursor *c, void *row)
{
	struct store_policy_epochs *e = row;
	e->pending = cursor_u64(c);
	e->other = cursor_u64(c);
	e->since_ms = cursor_u64(c);
	e->activated_ms = cursor_u64(c);
	e->other_text = c->failed ? NULL : text_decode(c);
}

static json_t *epochs_json(const void *row)
{
	const struct store_policy_epochs *e = row;
	return json_pack("{s:I, s:I, s:s, s:I, s:I}", "pending", (json_int_t)e->pending, "other",
	                 (json_int_t)e->other, "other_text", e->other_text ? e->other_text : "",
	                 "since_ms", (json_int_t)e->since_ms, "activated_ms",
	                 (json_int_t)e->activated_ms);
}

static void epochs_release(void *row)
{
	struct store_policy_epochs *e = row;
	free(e->other_text);
	e->other_text = NULL;
}

/* The pending epoch becomes the active one; @other_text is the row's
 * other text, copied beforehand (stolen). The row is there while an epoch
 * is pending, so replacing it allocates nothing and cannot fail. */
static void activate(struct store_state *s, uint64_t time_ms, char *other_text)
{
	struct store_policy_epochs ne = *store_policy_epochs(s);
	ne.pending = 0;
	ne.activated_ms = time_ms;
	ne.other_text = other_text;
	store_table_put(s, STORE_POLICY_EPOCHS, &ne);
}

static char *other_text_copy(const struct store_state *s)
{
	const char *t = store_policy_epochs(s)->other_text;
	return strdup(t ? t : "");
}

/* A put activates the pending epoch it names (the leader's, once every
 * member acknowledged it or the wait is over); only policy.apply makes an
 * epoch pending. */
static int epochs_apply(struct store_state *s, const struct store_cmd *cmd,
                        struct store_result *res)
{
	const struct store_policy_epochs *want =
	    STORE_CMD_ROW(cmd, const struct store_policy_epochs);
	const struct store_policy_epochs *e = store_policy_epochs(s);
	if (cmd->op != STORE_PUT || want->pending == 0) {
		store_reject(res, "an epoch is made pending by a policy, and only activated here");
		return 0;
	}
	if (e->pending != want->pending) {
		store_reject(
		    res, "epoch %llu is not pending (the policy is at epoch %llu, active %llu)",
		    (unsigned long long)want->pending, (unsigned long long)store_policy(s)->epoch,
		    (unsigned long long)store_policy_active(s, NULL));
		return 0;
	}
	char *text = other_text_copy(s);
	if (!text)
		return -ENOMEM;
	activate(s, cmd->time_ms, text);
	res->value = want->pending;
	return 0;
}

static const struct store_table epochs_table = {
    .id = STORE_POLICY_EPOCHS,
    .name = "policy_epochs",
    .version = 6,
    .row_size = sizeof(struct store_policy_epochs),
    .single = true,
    .encode = epochs_encode,
    .decode = epochs_decode,
    .apply = epochs_apply,
    .merge = merge_skip, /* the new cluster's leader activates what is pending */
    .to_json = epochs_json,
    .release = epochs_release,
};

static void ack_encode(struct obuf *b, const void *row)
{
	const struct store_policy_ack *a = row;
	obuf_put_str(b, a->host);
	obuf_put_u64(b, a->epoch);
	obuf_put_u64(b, a->time_ms);
}

static void ack_decode(struct cursor *c, void *row)
{
	struct store_policy_ack *a = row;
	cursor_str(c, a->host, sizeof(a->host));
	a->epoch = cursor_u64(c);
	a->time_ms = cursor_u64(c);
}

static int ack_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_policy_ack *)a)->host,
	              ((const struct store_policy_ack *)b)->host);
}

static json_t *ack_json(const void *row)
{
	const struct store_policy_ack *a = row;
	return json_pack("{s:s, s:I, s:I}", "host", a->host, "epoch", (json_int_t)a->epoch,
	                 "time_ms", (json_int_t)a->time_ms);
}

/* Whether every member has acknowledged @epoch, counting @ack (a put
 * being applied) as its host's. */
static bool all_acked(const struct store_state *s, uint64_t epoch,
                      const struct store_policy_ack *ack)
{
	size_t n;
	const struct store_member *m = store_rows(s, STORE_MEMBERS, &n);
	for (size_t i = 0; i < n; i++) {
		struct store_policy_ack key = {0};
		snprintf(key.host, sizeof(key.host), "%s", m[i].name);
		const struct store_policy_ack *a =
		    strcmp(ack->host, key.host) == 0 ? ack
		                                     : store_table_get(s, STORE_POLICY_ACKS, &key);
		if (!a || a->epoch < epoch)
			return false;
	}
	return n > 0;
}

/* The last member's acknowledgement activates the pending epoch at once
 * (res->value: that epoch), a commit sooner than the leader's activation,
 * which is left for a change some member does not acknowledge. */
static int ack_apply(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct store_policy_ack *ack = STORE_CMD_ROW(cmd, const struct store_policy_ack);
	if (!ack->host[0]) {
		store_reject(res, "an acknowledgement names its host");
		return 0;
	}
	uint64_t pending = store_policy_epochs(s)->pending;
	char *text = NULL;
	if (cmd->op == STORE_PUT && pending && all_acked(s, pending, ack) &&
	    !(text = other_text_copy(s)))
		return -ENOMEM;
	int r = store_apply_simple(s, cmd, res, "acknowledgement");
	if (text && r == 0 && res->applied) {
		activate(s, cmd->time_ms, text);
		res->value = pending;
	} else {
		free(text);
	}
	return r;
}

static const struct store_table acks_table = {
    .id = STORE_POLICY_ACKS,
    .name = "policy_acks",
    .version = 6,
    .row_size = sizeof(struct store_policy_ack),
    .cmp = ack_cmp,
    .encode = ack_encode,
    .decode = ack_decode,
    .apply = ack_apply,
    .merge = merge_skip, /* each member acknowledges again what it has */
    .to_json = ack_json,
};

/* ---- leases (the DHCP service will take them over) ---- */

static void lease_encode(struct obuf *b, const void *row)
{
	const struct store_lease *l = row;
	obuf_put_str(b, l->mac);
	obuf_put_u32(b, l->addr);
	obuf_put_str(b, l->host);
	obuf_put_u64(b, l->expires_ms);
}

static void lease_decode(struct cursor *c, void *row)
{
	struct store_lease *l = row;
	cursor_str(c, l->mac, sizeof(l->mac));
	l->addr = cursor_u32(c);
	cursor_str(c, l->host, sizeof(l->host));
	l->expires_ms = cursor_u64(c);
}

static int lease_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_lease *)a)->mac, ((const struct store_lease *)b)->mac);
}

static json_t *lease_json(const void *row)
{
	const struct store_lease *l = row;
	return json_pack("{s:s, s:o, s:s, s:I}", "mac", l->mac, "addr", addr_json_host(l->addr),
	                 "host", l->host, "expires_ms", (json_int_t)l->expires_ms);
}

static const struct store_lease *lease_of_addr(const struct store_state *s, uint32_t addr)
{
	size_t n;
	const struct store_lease *rows = store_rows(s, STORE_LEASES, &n);
	for (size_t i = 0; i < n; i++)
		if (rows[i].addr == addr)
			return &rows[i];
	return NULL;
}

static int lease_apply(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct store_lease *l = STORE_CMD_ROW(cmd, const struct store_lease);
	if (cmd->op == STORE_PUT) {
		const struct store_lease *other = lease_of_addr(s, l->addr);
		/* An expired lease gives its address up; "expired" is judged
		 * by the command's own clock, so every replica agrees. */
		if (other && strcmp(other->mac, l->mac) != 0 && other->expires_ms > cmd->time_ms) {
			store_reject(res, "the address is leased to %s", other->mac);
			return 0;
		}
		if (other && strcmp(other->mac, l->mac) != 0) {
			struct store_lease key = *other;
			store_table_del(s, STORE_LEASES, &key);
		}
	}
	return store_apply_simple(s, cmd, res, "lease");
}

static enum store_merge lease_merge(const struct store_state *s, struct store_cmd *cmd,
                                    char **ret_reason)
{
	const struct store_lease *l = STORE_CMD_ROW(cmd, const struct store_lease);
	if (cmd->op == STORE_DELETE)
		return store_table_get(s, STORE_LEASES, l) ? STORE_MERGE_APPLY : STORE_MERGE_SKIP;
	const struct store_lease *row = lease_of_addr(s, l->addr);
	if (!row || strcmp(row->mac, l->mac) == 0)
		return STORE_MERGE_APPLY;
	return conflict(ret_reason, "an address was leased to %s and to %s", row->mac, l->mac);
}

static const struct store_table leases_table = {
    .id = STORE_LEASES,
    .name = "leases",
    .version = 1,
    .row_size = sizeof(struct store_lease),
    .cmp = lease_cmp,
    .encode = lease_encode,
    .decode = lease_decode,
    .apply = lease_apply,
    .merge = lease_merge,
    .to_json = lease_json,
};

/* ---- conflicts ---- */

static void conflict_encode(struct obuf *b, const void *row)
{
	const struct store_conflict *c = row;
	obuf_put_u64(b, c->id);
	obuf_put_u8(b, c->table);
	obuf_put_u64(b, c->generation);
	obuf_put_str(b, c->reason);
}

static void conflict_decode(struct cursor *c, void *row)
{
	struct store_conflict *r = row;
	r->id = cursor_u64(c);
	r->table = cursor_u8(c);
	r->generation = cursor_u64(c);
	cursor_str(c, r->reason, sizeof(r->reason));
}

static int conflict_cmp(const void *a, const void *b)
{
	return store_cmp_u64(((const struct store_conflict *)a)->id,
	                     ((const struct store_conflict *)b)->id);
}

static json_t *conflict_json(const void *row)
{
	const struct store_conflict *c = row;
	const char *table = store_table_name(c->table);
	return json_pack("{s:I, s:s, s:I, s:s}", "id", (json_int_t)c->id, "table",
	                 table ? table : "unknown", "generation", (json_int_t)c->generation,
	                 "reason", c->reason);
}

static int conflict_apply(struct store_state *s, const struct store_cmd *cmd,
                          struct store_result *res)
{
	if (cmd->op == STORE_DELETE)
		return store_apply_simple(s, cmd, res, "conflict");
	struct store_conflict row = *STORE_CMD_ROW(cmd, const struct store_conflict);
	row.id = s->next_conflict;
	int r = store_table_put(s, STORE_CONFLICTS, &row);
	if (r == 0)
		res->value = s->next_conflict++;
	return r;
}

static const struct store_table conflicts_table = {
    .id = STORE_CONFLICTS,
    .name = "conflicts",
    .version = 1,
    .row_size = sizeof(struct store_conflict),
    .cmp = conflict_cmp,
    .encode = conflict_encode,
    .decode = conflict_decode,
    .apply = conflict_apply,
    .merge = merge_skip,
    .to_json = conflict_json,
};

const struct store_table *const store_core_tables[] = {
    &cluster_table,   &members_table, &policy_table, &leases_table,
    &conflicts_table, &epochs_table,  &acks_table,   NULL,
};
