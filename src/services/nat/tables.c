/* The NAT service's store tables (tables.h): port blocks and mappings, with
 * their encodings, apply, merge rules and JSON. */
#include "tables.h"

#include <stdarg.h>
#include <stdio.h>

#include "lib/buf.h"
#include "lib/error.h"
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

/* The block that overlaps [start, start+size), if any. Blocks are aligned
 * powers of two, so overlapping means one contains the other. */
static const struct nat_block *block_overlap(const struct store_state *s, uint32_t start,
                                             uint32_t size)
{
	for (size_t i = 0; i < store_count(s, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(s, NAT_BLOCKS, i);
		if (b->start < start + size && start < (uint32_t)b->start + b->size)
			return b;
	}
	return NULL;
}

static bool block_aligned(const struct nat_block *b)
{
	return b->size && !(b->size & (b->size - 1)) && b->start % b->size == 0;
}

/* ---- blocks ---- */

static void block_encode(struct obuf *b, const void *row)
{
	const struct nat_block *k = row;
	obuf_put_u16(b, k->start);
	obuf_put_u16(b, k->size);
	obuf_put_u64(b, k->owner);
	obuf_put_u64(b, k->claimed_ms);
}

static void block_decode(struct cursor *c, void *row)
{
	struct nat_block *k = row;
	k->start = cursor_u16(c);
	k->size = cursor_u16(c);
	k->owner = cursor_u64(c);
	k->claimed_ms = cursor_u64(c);
}

static int block_cmp(const void *a, const void *b)
{
	return store_cmp_u64(((const struct nat_block *)a)->start,
	                     ((const struct nat_block *)b)->start);
}

static json_t *block_json(const void *row)
{
	const struct nat_block *k = row;
	return json_pack("{s:i, s:i, s:I, s:I}", "start", k->start, "size", k->size, "owner",
	                 (json_int_t)k->owner, "claimed_ms", (json_int_t)k->claimed_ms);
}

static int block_apply(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct nat_block *b = STORE_CMD_ROW(cmd, const struct nat_block);
	const struct nat_block *old = store_table_get(s, NAT_BLOCKS, b);
	if (cmd->op == STORE_DELETE) {
		if (!old || old->owner != b->owner) {
			store_reject(res, "member %llu holds no block at %u",
			             (unsigned long long)b->owner, b->start);
			return 0;
		}
		store_table_del(s, NAT_BLOCKS, b);
		return 0;
	}
	if (!block_aligned(b)) {
		store_reject(res,
		             "a block's size is a power of two and its start a multiple of it");
		return 0;
	}
	if (b->owner == 0) {
		store_reject(res, "a block needs an owner");
		return 0;
	}
	const struct nat_block *other = block_overlap(s, b->start, b->size);
	if (other) {
		store_reject(res, "ports %u-%u overlap the block %u-%u of member %llu", b->start,
		             b->start + b->size - 1, other->start, other->start + other->size - 1,
		             (unsigned long long)other->owner);
		return 0;
	}
	return store_table_put(s, NAT_BLOCKS, b);
}

/* A NAT block claimed on both sides goes to the new cluster's owner; the
 * orphan's owner gets another free block of the same size. */
static enum store_merge block_merge(const struct store_state *s, struct store_cmd *cmd,
                                    char **ret_reason)
{
	struct nat_block *b = STORE_CMD_ROW(cmd, struct nat_block);
	if (cmd->op == STORE_DELETE)
		return STORE_MERGE_APPLY; /* a release that finds nothing is rejected harmlessly */
	if (!block_aligned(b))
		return STORE_MERGE_APPLY; /* not a block: applying rejects it with the reason */
	for (size_t i = 0; i < store_count(s, NAT_BLOCKS); i++) {
		const struct nat_block *o = store_row(s, NAT_BLOCKS, i);
		if (o->owner == b->owner && o->start == b->start)
			return STORE_MERGE_SKIP;
	}
	if (!block_overlap(s, b->start, b->size))
		return STORE_MERGE_APPLY;
	/* Ports below 1024 are never handed out; blocks stay aligned. */
	uint32_t first = (1024 + (uint32_t)b->size - 1) / b->size * b->size;
	for (uint32_t start = first; start + b->size <= 65536; start += b->size) {
		if (!block_overlap(s, start, b->size)) {
			b->start = (uint16_t)start;
			return STORE_MERGE_APPLY;
		}
	}
	return conflict(ret_reason,
	                "NAT block %u/%u of member %llu was claimed on both sides and no free "
	                "block is left",
	                b->start, b->size, (unsigned long long)b->owner);
}

static const struct store_table blocks_table = {
    .id = NAT_BLOCKS,
    .name = "nat_blocks",
    .version = 1,
    .row_size = sizeof(struct nat_block),
    .cmp = block_cmp,
    .encode = block_encode,
    .decode = block_decode,
    .apply = block_apply,
    .merge = block_merge,
    .to_json = block_json,
};

/* ---- mappings ---- */

static void mapping_encode(struct obuf *b, const void *row)
{
	const struct nat_mapping *m = row;
	obuf_put_u8(b, m->proto);
	obuf_put_u16(b, m->public_port);
	obuf_put_u64(b, m->owner);
	obuf_put_u32(b, m->guest_addr);
	obuf_put_u16(b, m->guest_port);
	obuf_put_u64(b, m->expires_ms);
}

static void mapping_decode(struct cursor *c, void *row)
{
	struct nat_mapping *m = row;
	m->proto = cursor_u8(c);
	m->public_port = cursor_u16(c);
	m->owner = cursor_u64(c);
	m->guest_addr = cursor_u32(c);
	m->guest_port = cursor_u16(c);
	m->expires_ms = cursor_u64(c);
}

static int mapping_cmp(const void *a, const void *b)
{
	const struct nat_mapping *x = a, *y = b;
	int r = store_cmp_u64(x->proto, y->proto);
	return r ? r : store_cmp_u64(x->public_port, y->public_port);
}

static json_t *mapping_json(const void *row)
{
	const struct nat_mapping *m = row;
	return json_pack("{s:s, s:i, s:I, s:o, s:i, s:I}", "proto",
	                 m->proto == 6    ? "tcp"
	                 : m->proto == 17 ? "udp"
	                                  : "other",
	                 "public_port", m->public_port, "owner", (json_int_t)m->owner, "guest_addr",
	                 addr_json_host(m->guest_addr), "guest_port", m->guest_port, "expires_ms",
	                 (json_int_t)m->expires_ms);
}

static int mapping_apply(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const struct nat_mapping *m = STORE_CMD_ROW(cmd, const struct nat_mapping);
	const struct nat_mapping *old = store_table_get(s, NAT_MAPPINGS, m);
	if (m->proto != 6 && m->proto != 17) {
		store_reject(res, "a mapping is for TCP (6) or UDP (17)");
		return 0;
	}
	if (cmd->op == STORE_PUT && old && old->owner != m->owner) {
		store_reject(res, "public port %u/%s is mapped by member %llu", m->public_port,
		             m->proto == 6 ? "tcp" : "udp", (unsigned long long)old->owner);
		return 0;
	}
	const struct nat_block *b = block_overlap(s, m->public_port, 1);
	if (cmd->op == STORE_PUT && b && b->owner != m->owner) {
		store_reject(res, "public port %u is in the block %u-%u of member %llu",
		             m->public_port, b->start, b->start + b->size - 1,
		             (unsigned long long)b->owner);
		return 0;
	}
	return store_apply_simple(s, cmd, res, "mapping");
}

static enum store_merge mapping_merge(const struct store_state *s, struct store_cmd *cmd,
                                      char **ret_reason)
{
	const struct nat_mapping *m = STORE_CMD_ROW(cmd, const struct nat_mapping);
	const struct nat_mapping *row = store_table_get(s, NAT_MAPPINGS, m);
	if (cmd->op == STORE_DELETE)
		return row ? STORE_MERGE_APPLY : STORE_MERGE_SKIP;
	if (!row)
		return STORE_MERGE_APPLY;
	if (row->owner == m->owner)
		return STORE_MERGE_SKIP;
	return conflict(ret_reason,
	                "public port %u was mapped by member %llu on one side and %llu on "
	                "the other",
	                m->public_port, (unsigned long long)row->owner,
	                (unsigned long long)m->owner);
}

static const struct store_table mappings_table = {
    .id = NAT_MAPPINGS,
    .name = "nat_mappings",
    .version = 1,
    .row_size = sizeof(struct nat_mapping),
    .cmp = mapping_cmp,
    .encode = mapping_encode,
    .decode = mapping_decode,
    .apply = mapping_apply,
    .merge = mapping_merge,
    .to_json = mapping_json,
};

const struct store_table *const nat_tables[] = {&blocks_table, &mappings_table, NULL};
