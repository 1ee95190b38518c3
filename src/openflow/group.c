/* group_mod (spec 7.3.4.2) and group statistics (7.3.5.9). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "lib/array.h"

#define BUCKET_HEADER_LEN 16
#define GROUP_STATS_LEN   40

static enum of13_err actions_decode(struct cursor *c, struct of13_action *out, unsigned *n)
{
	*n = 0;
	while (c->left) {
		if (*n == OF13_ACTIONS_MAX)
			return OF13_ERR_TOO_MANY;
		enum of13_err e = of13_action_decode(c, &out[(*n)++]);
		if (e)
			return e;
	}
	return OF13_OK;
}

struct of13_bucket *of13_group_mod_add_bucket(struct of13_group_mod *gm)
{
	if (ARRAY_RESERVE(gm->buckets, gm->cap_buckets, gm->n_buckets + 1) < 0)
		return NULL;
	struct of13_bucket *bk = &gm->buckets[gm->n_buckets++];
	memset(bk, 0, sizeof(*bk));
	return bk;
}

void of13_group_mod_free(struct of13_group_mod *gm)
{
	free(gm->buckets);
	gm->buckets = NULL;
	gm->n_buckets = gm->cap_buckets = 0;
}

enum of13_err of13_group_mod_decode(const void *data, size_t len, struct of13_group_mod *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_GROUP_MOD, &c);
	if (e)
		return e;
	struct of13_group_mod gm = {.command = cursor_u16(&c), .type = cursor_u8(&c)};
	cursor_u8(&c);
	gm.group_id = cursor_u32(&c);
	if (!cursor_ok(&c))
		return OF13_ERR_BAD_LEN;
	while (c.left) {
		uint16_t blen = cursor_u16(&c);
		if (!cursor_ok(&c) || blen < BUCKET_HEADER_LEN || blen % 8 || blen - 2u > c.left) {
			of13_group_mod_free(&gm);
			return OF13_ERR_BAD_LEN;
		}
		struct of13_bucket *bk = of13_group_mod_add_bucket(&gm);
		if (!bk) {
			of13_group_mod_free(&gm);
			return OF13_ERR_TOO_MANY;
		}
		struct cursor bc = cursor_init(cursor_bytes(&c, blen - 2u), blen - 2u);
		bk->weight = cursor_u16(&bc);
		bk->watch_port = cursor_u32(&bc);
		bk->watch_group = cursor_u32(&bc);
		cursor_u32(&bc);
		if ((e = actions_decode(&bc, bk->actions, &bk->n_actions))) {
			of13_group_mod_free(&gm);
			return e;
		}
	}
	*ret = gm;
	return OF13_OK;
}

int of13_group_mod_encode(struct obuf *b, uint32_t xid, const struct of13_group_mod *gm)
{
	size_t at = b->len;
	of13_start(b, OF13_GROUP_MOD, xid);
	obuf_put_u16(b, gm->command);
	obuf_put_u8(b, gm->type);
	obuf_put_u8(b, 0);
	obuf_put_u32(b, gm->group_id);
	for (unsigned i = 0; i < gm->n_buckets; i++) {
		const struct of13_bucket *bk = &gm->buckets[i];
		size_t start = b->len;
		obuf_put_u16(b, 0);
		obuf_put_u16(b, bk->weight);
		obuf_put_u32(b, bk->watch_port);
		obuf_put_u32(b, bk->watch_group);
		obuf_put_u32(b, 0);
		for (unsigned k = 0; k < bk->n_actions; k++)
			of13_action_encode(b, &bk->actions[k]);
		of13_put_len(b, start, b->len - start);
	}
	if (b->failed)
		return -ENOMEM;
	return b->len - at > OF13_MAX_MESSAGE ? -EMSGSIZE : 0;
}

void of13_group_mod_format(FILE *out, const struct of13_group_mod *gm)
{
	static const char *const commands[] = {"add", "modify", "delete"};
	static const char *const types[] = {"all", "select", "indirect", "ff"};
	fprintf(out, "%s group_id=%" PRIu32 " type=%s",
	        gm->command < 3 ? commands[gm->command] : "?", gm->group_id,
	        gm->type < 4 ? types[gm->type] : "?");
	for (unsigned i = 0; i < gm->n_buckets; i++) {
		fprintf(out, " bucket=weight:%u,actions=", gm->buckets[i].weight);
		for (unsigned k = 0; k < gm->buckets[i].n_actions; k++) {
			if (k)
				fputc(',', out);
			of13_action_format(out, &gm->buckets[i].actions[k]);
		}
	}
}

void of13_group_stats_bucket(const struct of13_group_stats *gs, unsigned i, uint64_t *packets,
                             uint64_t *bytes)
{
	struct cursor c = cursor_init(gs->bucket_counters + 16u * i, 16);
	*packets = cursor_u64(&c);
	*bytes = cursor_u64(&c);
}

void of13_group_stats_request_encode(struct obuf *b, uint32_t xid, uint32_t group_id)
{
	of13_mp_start(b, OF13_MULTIPART_REQUEST, xid, OF13_MP_GROUP, 0);
	obuf_put_u32(b, group_id);
	obuf_put_u32(b, 0);
}

enum of13_err of13_group_stats_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                            void (*fn)(void *userdata,
                                                       const struct of13_group_stats *gs),
                                            void *userdata)
{
	struct cursor c;
	enum of13_err e =
	    of13_mp_body(data, len, OF13_MULTIPART_REPLY, OF13_MP_GROUP, ret_flags, &c);
	if (e)
		return e;
	while (c.left) {
		uint16_t glen = cursor_u16(&c);
		if (!cursor_ok(&c) || glen < GROUP_STATS_LEN || (glen - GROUP_STATS_LEN) % 16 ||
		    glen - 2u > c.left)
			return OF13_ERR_BAD_LEN;
		struct cursor g = cursor_init(cursor_bytes(&c, glen - 2u), glen - 2u);
		struct of13_group_stats gs = {0};
		cursor_u16(&g);
		gs.group_id = cursor_u32(&g);
		gs.ref_count = cursor_u32(&g);
		cursor_u32(&g);
		gs.packet_count = cursor_u64(&g);
		gs.byte_count = cursor_u64(&g);
		gs.duration_sec = cursor_u32(&g);
		gs.duration_nsec = cursor_u32(&g);
		gs.n_buckets = (unsigned)(g.left / 16);
		gs.bucket_counters = cursor_bytes(&g, g.left);
		fn(userdata, &gs);
	}
	return OF13_OK;
}

void of13_group_stats_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                   const struct of13_group_stats *gs, unsigned n)
{
	of13_mp_start(b, OF13_MULTIPART_REPLY, xid, OF13_MP_GROUP, flags);
	for (unsigned i = 0; i < n; i++) {
		size_t start = b->len;
		obuf_put_u16(b, 0);
		obuf_put_u16(b, 0);
		obuf_put_u32(b, gs[i].group_id);
		obuf_put_u32(b, gs[i].ref_count);
		obuf_put_u32(b, 0);
		obuf_put_u64(b, gs[i].packet_count);
		obuf_put_u64(b, gs[i].byte_count);
		obuf_put_u32(b, gs[i].duration_sec);
		obuf_put_u32(b, gs[i].duration_nsec);
		if (gs[i].n_buckets)
			obuf_put_bytes(b, gs[i].bucket_counters, gs[i].n_buckets * 16u);
		of13_put_len(b, start, b->len - start);
	}
}
