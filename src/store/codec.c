/* The store's encodings and dumps: a command (header, then its table's row),
 * the snapshot of a whole state (header with the cluster and policy rows,
 * then every other registered table in id order), its restore from any
 * encoding up to STORE_ENCODING_VERSION, and the JSON of the tables. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "state-internal.h"

#define SNAPSHOT_MAGIC 0x4554534eu /* "ETSN" */
#define COMMAND_MAGIC  0x4543u     /* "EC" */

/* ---- commands ---- */

int store_cmd_encode(const struct store_cmd *cmd, uint8_t **ret_data, size_t *ret_len)
{
	const struct store_table *tb = store_table_lookup(cmd->table);
	if (!tb || (cmd->op != STORE_PUT && cmd->op != STORE_DELETE))
		return -EINVAL;
	struct obuf b = {0};
	obuf_put_u16(&b, COMMAND_MAGIC);
	obuf_put_u8(&b, STORE_ENCODING_VERSION);
	obuf_put_u8(&b, cmd->table);
	obuf_put_u8(&b, cmd->op);
	obuf_put_u64(&b, cmd->time_ms);
	tb->encode(&b, cmd->row);
	return obuf_finish(&b, ret_data, ret_len);
}

/* Decodes a row of @tb written in encoding @version. */
static void decode_row(const struct store_table *tb, struct cursor *c, void *row,
                       unsigned version)
{
	if (tb->decode_old && version < tb->row_version)
		tb->decode_old(c, row, version);
	else
		tb->decode(c, row);
}

static const char *header_check(struct cursor *c, struct store_cmd *cmd, uint8_t *ret_version)
{
	uint16_t magic = cursor_u16(c);
	uint8_t version = cursor_u8(c);
	*ret_version = version;
	cmd->table = cursor_u8(c);
	cmd->op = cursor_u8(c);
	cmd->time_ms = cursor_u64(c);
	if (!cursor_ok(c))
		return "header: truncated";
	if (magic != COMMAND_MAGIC)
		return "header: bad magic";
	if (version == 0 || version > STORE_ENCODING_VERSION)
		return "header: unknown encoding version";
	if (!store_table_lookup(cmd->table))
		return "header: unknown table";
	if (cmd->op != STORE_PUT && cmd->op != STORE_DELETE)
		return "header: unknown operation";
	return NULL;
}

int store_cmd_decode(const void *data, size_t len, struct store_cmd *ret_cmd, char **ret_error)
{
	struct cursor c = cursor_init(data, len);
	struct store_cmd cmd = {0};
	uint8_t version;
	const char *why = header_check(&c, &cmd, &version);
	if (why)
		return error_set(ret_error, -EBADMSG, "command %s", why);
	const struct store_table *tb = store_table_lookup(cmd.table);
	decode_row(tb, &c, cmd.row, version);
	/* Up to 7 zero bytes pad a command to 8 bytes in the Raft log. */
	bool padding = c.left < 8;
	for (size_t i = 0; padding && i < c.left; i++)
		padding = c.p[i] == 0;
	if (!cursor_ok(&c) || !padding) {
		store_cmd_done(&cmd);
		return error_set(ret_error, -EBADMSG, "command for table %s: %s row", tb->name,
		                 cursor_ok(&c) ? "trailing bytes after the"
		                               : "truncated or malformed");
	}
	*ret_cmd = cmd;
	return 0;
}

void store_cmd_done(struct store_cmd *cmd)
{
	const struct store_table *tb = cmd ? store_table_lookup(cmd->table) : NULL;
	if (tb && tb->release)
		tb->release(cmd->row);
}

int store_state_apply_encoded(struct store_state *s, const void *data, size_t len,
                              struct store_result *ret_result, char **ret_error)
{
	struct store_cmd cmd;
	int r = store_cmd_decode(data, len, &cmd, ret_error);
	if (r < 0)
		return r;
	r = store_state_apply(s, &cmd, ret_result);
	store_cmd_done(&cmd);
	return r;
}

/* ---- snapshots ---- */

/* The cluster and policy rows sit in the snapshot's header. */
static bool in_header(unsigned id)
{
	return id == STORE_CLUSTER || id == STORE_POLICY;
}

int store_state_snapshot(const struct store_state *s, uint8_t **ret_data, size_t *ret_len)
{
	struct obuf b = {0};
	obuf_put_u32(&b, SNAPSHOT_MAGIC);
	obuf_put_u8(&b, STORE_ENCODING_VERSION);
	obuf_put_u64(&b, s->next_conflict);
	store_table_lookup(STORE_CLUSTER)->encode(&b, store_row(s, STORE_CLUSTER, 0));
	store_table_lookup(STORE_POLICY)->encode(&b, store_row(s, STORE_POLICY, 0));
	for (unsigned id = 1; id < STORE_TABLE_IDS; id++) {
		const struct store_table *tb = store_table_lookup(id);
		if (!tb || in_header(id))
			continue;
		obuf_put_u8(&b, (uint8_t)id);
		if (tb->single) {
			tb->encode(&b, store_row(s, id, 0));
			continue;
		}
		const struct state_table *t = &s->tables[id];
		obuf_put_u32(&b, (uint32_t)t->n);
		for (size_t i = 0; i < t->n; i++)
			tb->encode(&b, state_row_at(t, tb, i));
	}
	return obuf_finish(&b, ret_data, ret_len);
}

/* Decodes one row of @tb into @n (a one-row table's, or the next of a
 * keyed table's, which must come in key order). */
static int restore_row(struct store_state *n, const struct store_table *tb, struct cursor *c,
                       unsigned version, bool keyed, const char **why)
{
	alignas(max_align_t) unsigned char row[STORE_ROW_MAX] = {0};
	decode_row(tb, c, row, version);
	/* Judged before the cursor is, as encodings 1-3 always were. */
	if (keyed && n->tables[tb->id].n &&
	    tb->cmp(state_row_at(&n->tables[tb->id], tb, n->tables[tb->id].n - 1), row) >= 0) {
		*why = "rows out of order or repeated";
		if (tb->release)
			tb->release(row);
		return -EBADMSG;
	}
	if (!cursor_ok(c) || store_table_put(n, tb->id, row) == 0)
		return 0;
	if (tb->release)
		tb->release(row);
	return -ENOMEM;
}

static int restore_table(struct store_state *n, const struct store_table *tb, struct cursor *c,
                         unsigned version, const char **why)
{
	if (cursor_u8(c) != tb->id) {
		*why = "tables out of order";
		return -EBADMSG;
	}
	if (tb->single)
		return restore_row(n, tb, c, version, false, why);
	uint32_t count = cursor_u32(c);
	for (uint32_t i = 0; i < count && cursor_ok(c); i++) {
		int r = restore_row(n, tb, c, version, true, why);
		if (r < 0)
			return r;
	}
	return 0;
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
	int r = restore_row(n, store_table_lookup(STORE_CLUSTER), c, version, false, why);
	if (r == 0)
		r = restore_row(n, store_table_lookup(STORE_POLICY), c, version, false, why);
	for (unsigned id = 1; r == 0 && id < STORE_TABLE_IDS && cursor_ok(c); id++) {
		const struct store_table *tb = store_table_lookup(id);
		/* A table newer than the snapshot's encoding starts empty. */
		if (!tb || in_header(id) || tb->version > version)
			continue;
		r = restore_table(n, tb, c, version, why);
	}
	if (r < 0)
		return r;
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

int store_state_restore(struct store_state *s, const void *data, size_t len, char **ret_error)
{
	struct store_state *n;
	int r = store_state_new(&n);
	if (r < 0)
		return r;
	struct cursor c = cursor_init(data, len);
	const char *why = "out of memory";
	r = restore_into(n, &c, &why);
	if (r < 0) {
		store_state_free(n);
		return error_set(ret_error, r, "snapshot: %s", why);
	}
	state_clear(s);
	*s = *n;
	free(n);
	return 0;
}

/* ---- dump ---- */

json_t *store_table_dump(const struct store_state *s, unsigned table)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb)
		return NULL;
	if (tb->single)
		return tb->to_json(store_row(s, table, 0));
	json_t *a = json_array();
	const struct state_table *t = &s->tables[table];
	for (size_t i = 0; i < t->n; i++)
		json_array_append_new(a, tb->to_json(state_row_at(t, tb, i)));
	return a;
}

json_t *store_state_dump(const struct store_state *s)
{
	json_t *o = json_object();
	for (unsigned id = 1; id < STORE_TABLE_IDS; id++)
		if (store_table_lookup(id))
			json_object_set_new(o, store_table_name(id), store_table_dump(s, id));
	return o;
}
