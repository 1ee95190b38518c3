/* The registry of tables and the rows of a state: registration, lookup by
 * id and name, sorted row arrays, read access, and apply's dispatch to the
 * table that owns a command. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "state-internal.h"

static const struct store_table *registry[STORE_TABLE_IDS];

/* The store's own tables are there before anything else runs. */
__attribute__((constructor)) static void registry_init(void)
{
	for (size_t i = 0; store_core_tables[i]; i++)
		registry[store_core_tables[i]->id] = store_core_tables[i];
}

/* ---- registry ---- */

static int table_check(const struct store_table *t, char **ret_error)
{
	if (t->id == 0 || !t->name || !t->name[0] || !t->encode || !t->decode || !t->apply ||
	    !t->to_json || (!t->single && !t->cmp))
		return error_set(ret_error, -EINVAL, "table %u: incomplete operations", t->id);
	if (t->row_size == 0 || t->row_size > STORE_ROW_MAX)
		return error_set(ret_error, -EINVAL, "table %s: a row of %zu bytes exceeds %d",
		                 t->name, t->row_size, STORE_ROW_MAX);
	if (t->version == 0 || t->version > STORE_ENCODING_VERSION)
		return error_set(ret_error, -EINVAL, "table %s: unknown encoding version %u",
		                 t->name, t->version);
	const struct store_table *other = registry[t->id];
	if (other && other != t)
		return error_set(ret_error, -EEXIST, "table id %u is %s's, not %s's", t->id,
		                 other->name, t->name);
	for (unsigned id = 1; id < STORE_TABLE_IDS; id++)
		if (registry[id] && registry[id] != t && strcmp(registry[id]->name, t->name) == 0)
			return error_set(ret_error, -EEXIST, "table name %s is taken by table %u",
			                 t->name, id);
	return 0;
}

int store_tables_register(const struct store_table *const *tables, char **ret_error)
{
	for (size_t i = 0; tables[i]; i++) {
		int r = table_check(tables[i], ret_error);
		if (r < 0)
			return r;
		/* Within the list too: two of its tables may collide. */
		for (size_t j = 0; j < i; j++)
			if (tables[j] != tables[i] &&
			    (tables[j]->id == tables[i]->id ||
			     strcmp(tables[j]->name, tables[i]->name) == 0))
				return error_set(ret_error, -EEXIST, "tables %s and %s collide",
				                 tables[j]->name, tables[i]->name);
	}
	for (size_t i = 0; tables[i]; i++)
		registry[tables[i]->id] = tables[i];
	return 0;
}

const struct store_table *store_table_lookup(unsigned id)
{
	return id < STORE_TABLE_IDS ? registry[id] : NULL;
}

const char *store_table_name(unsigned table)
{
	const struct store_table *t = store_table_lookup(table);
	return t ? t->name : NULL;
}

int store_table_from_name(const char *name)
{
	for (unsigned id = 1; id < STORE_TABLE_IDS; id++)
		if (registry[id] && strcmp(registry[id]->name, name) == 0)
			return (int)id;
	return -ENOENT;
}

/* ---- sorted row arrays ---- */

/* Index of the row with @key's key, or where it would go; *found says
 * which. */
static size_t rows_find(const struct state_table *t, const struct store_table *table,
                        const void *key, bool *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = table->cmp(state_row_at(t, table, mid), key);
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

static void row_release(const struct store_table *table, void *row)
{
	if (table->release)
		table->release(row);
}

static int rows_reserve(struct state_table *t, const struct store_table *table)
{
	if (t->n < t->cap)
		return 0;
	size_t cap = t->cap ? t->cap * 2 : (table->single ? 1 : 16);
	unsigned char *rows = realloc(t->rows, cap * table->row_size);
	if (!rows)
		return -ENOMEM;
	t->rows = rows;
	t->cap = cap;
	return 0;
}

const void *store_table_get(const struct store_state *s, unsigned table, const void *key)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb)
		return NULL;
	const struct state_table *t = &s->tables[table];
	if (tb->single)
		return store_row(s, table, 0);
	bool found;
	size_t i = rows_find(t, tb, key, &found);
	return found ? state_row_at(t, tb, i) : NULL;
}

int store_table_put(struct store_state *s, unsigned table, const void *row)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb)
		return -EINVAL;
	struct state_table *t = &s->tables[table];
	bool found = tb->single && t->n == 1;
	size_t i = 0;
	if (!tb->single)
		i = rows_find(t, tb, row, &found);
	if (found) {
		row_release(tb, state_row_at(t, tb, i));
		memcpy(state_row_at(t, tb, i), row, tb->row_size);
		return 0;
	}
	if (rows_reserve(t, tb) < 0)
		return -ENOMEM;
	memmove(state_row_at(t, tb, i + 1), state_row_at(t, tb, i), (t->n - i) * tb->row_size);
	memcpy(state_row_at(t, tb, i), row, tb->row_size);
	t->n++;
	return 0;
}

void store_table_del(struct store_state *s, unsigned table, const void *key)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb)
		return;
	struct state_table *t = &s->tables[table];
	bool found = tb->single && t->n == 1;
	size_t i = 0;
	if (!tb->single)
		i = rows_find(t, tb, key, &found);
	if (!found)
		return;
	row_release(tb, state_row_at(t, tb, i));
	memmove(state_row_at(t, tb, i), state_row_at(t, tb, i + 1), (t->n - i - 1) * tb->row_size);
	t->n--;
}

void *store_row_edit(struct store_state *s, unsigned table, size_t i)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb || i >= s->tables[table].n)
		return NULL;
	return state_row_at(&s->tables[table], tb, i);
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

void state_clear(struct store_state *s)
{
	for (unsigned id = 0; id < STORE_TABLE_IDS; id++) {
		struct state_table *t = &s->tables[id];
		const struct store_table *tb = store_table_lookup(id);
		for (size_t i = 0; tb && i < t->n; i++)
			row_release(tb, state_row_at(t, tb, i));
		free(t->rows);
		*t = (struct state_table){0};
	}
}

void store_state_free(struct store_state *s)
{
	if (!s)
		return;
	state_clear(s);
	free(s);
}

size_t store_count(const struct store_state *s, unsigned table)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb)
		return 0;
	return tb->single ? 1 : s->tables[table].n;
}

const void *store_row(const struct store_state *s, unsigned table, size_t i)
{
	/* A one-row table reads as zero until its first put. */
	static const alignas(max_align_t) unsigned char zero[STORE_ROW_MAX];
	const struct store_table *tb = store_table_lookup(table);
	if (!tb)
		return NULL;
	const struct state_table *t = &s->tables[table];
	if (tb->single && i == 0 && t->n == 0)
		return zero;
	return i < t->n ? state_row_at(t, tb, i) : NULL;
}

const void *store_rows(const struct store_state *s, unsigned table, size_t *ret_n)
{
	const struct store_table *tb = store_table_lookup(table);
	if (!tb || tb->single || s->tables[table].n == 0) {
		*ret_n = 0;
		return NULL;
	}
	*ret_n = s->tables[table].n;
	return s->tables[table].rows;
}

const struct store_cluster *store_cluster(const struct store_state *s)
{
	return store_row(s, STORE_CLUSTER, 0);
}

const struct store_policy *store_policy(const struct store_state *s)
{
	return store_row(s, STORE_POLICY, 0);
}

const struct store_policy_epochs *store_policy_epochs(const struct store_state *s)
{
	return store_row(s, STORE_POLICY_EPOCHS, 0);
}

uint64_t store_policy_active(const struct store_state *s, const char **ret_text)
{
	const struct store_policy *p = store_policy(s);
	const struct store_policy_epochs *e = store_policy_epochs(s);
	uint64_t epoch = e->pending ? e->other : p->epoch;
	if (ret_text)
		*ret_text = epoch == 0 ? NULL : e->pending ? e->other_text : p->text;
	return epoch;
}

/* ---- apply ---- */

void store_reject(struct store_result *res, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
	res->applied = false;
}

int store_apply_simple(struct store_state *s, const struct store_cmd *cmd, struct store_result *res,
                       const char *what)
{
	if (cmd->op == STORE_DELETE) {
		if (!store_table_get(s, cmd->table, cmd->row)) {
			store_reject(res, "no such %s", what);
			return 0;
		}
		store_table_del(s, cmd->table, cmd->row);
		return 0;
	}
	return store_table_put(s, cmd->table, cmd->row);
}

int store_state_apply(struct store_state *s, const struct store_cmd *cmd,
                      struct store_result *ret_result)
{
	struct store_result res = {.applied = true};
	const struct store_table *tb = store_table_lookup(cmd->table);
	int r = 0;
	if (tb)
		r = tb->apply(s, cmd, &res);
	else
		store_reject(&res, "unknown table %u", cmd->table);
	if (r < 0)
		return r;
	*ret_result = res;
	return 0;
}
