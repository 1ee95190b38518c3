/* Flow statistics (spec 7.3.5.2). */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

#define FLOW_STATS_FIXED_LEN 48

void of13_flow_stats_request_encode(struct obuf *b, uint32_t xid,
                                    const struct of13_flow_stats_request *r)
{
	of13_mp_start(b, OF13_MULTIPART_REQUEST, xid, OF13_MP_FLOW, 0);
	obuf_put_u8(b, r->table_id);
	obuf_put_bytes(b, "\0\0\0", 3);
	obuf_put_u32(b, r->out_port);
	obuf_put_u32(b, r->out_group);
	obuf_put_u32(b, 0);
	obuf_put_u64(b, r->cookie);
	obuf_put_u64(b, r->cookie_mask);
	of13_match_encode(b, &r->match);
}

enum of13_err of13_flow_stats_request_decode(const void *data, size_t len,
                                             struct of13_flow_stats_request *ret)
{
	struct cursor c;
	uint16_t flags;
	enum of13_err e = of13_mp_body(data, len, OF13_MULTIPART_REQUEST, OF13_MP_FLOW, &flags, &c);
	if (e)
		return e;
	struct of13_flow_stats_request r = {.table_id = cursor_u8(&c)};
	cursor_bytes(&c, 3);
	r.out_port = cursor_u32(&c);
	r.out_group = cursor_u32(&c);
	cursor_u32(&c);
	r.cookie = cursor_u64(&c);
	r.cookie_mask = cursor_u64(&c);
	if (!cursor_ok(&c))
		return OF13_ERR_BAD_LEN;
	if ((e = of13_match_decode(&c, &r.match)))
		return e;
	if (c.left)
		return OF13_ERR_BAD_LEN;
	*ret = r;
	return OF13_OK;
}

enum of13_err of13_flow_stats_reply_decode(const void *data, size_t len, uint16_t *ret_flags,
                                           void (*fn)(void *userdata,
                                                      const struct of13_flow_stats *fs),
                                           void *userdata)
{
	struct cursor c;
	enum of13_err e =
	    of13_mp_body(data, len, OF13_MULTIPART_REPLY, OF13_MP_FLOW, ret_flags, &c);
	if (e)
		return e;
	while (c.left) {
		uint16_t flen = cursor_u16(&c);
		if (!cursor_ok(&c) || flen < FLOW_STATS_FIXED_LEN + 8 || flen % 8 ||
		    flen - 2u > c.left)
			return OF13_ERR_BAD_LEN;
		struct cursor f = cursor_init(cursor_bytes(&c, flen - 2u), flen - 2u);
		struct of13_flow_stats fs = {.table_id = cursor_u8(&f)};
		cursor_u8(&f);
		fs.duration_sec = cursor_u32(&f);
		fs.duration_nsec = cursor_u32(&f);
		fs.priority = cursor_u16(&f);
		fs.idle_timeout = cursor_u16(&f);
		fs.hard_timeout = cursor_u16(&f);
		fs.flags = cursor_u16(&f);
		cursor_u32(&f);
		fs.cookie = cursor_u64(&f);
		fs.packet_count = cursor_u64(&f);
		fs.byte_count = cursor_u64(&f);
		if ((e = of13_match_decode(&f, &fs.match)) ||
		    (e = of13_instructions_decode(&f, fs.instructions, &fs.n_instructions)))
			return e;
		fn(userdata, &fs);
	}
	return OF13_OK;
}

void of13_flow_stats_reply_encode(struct obuf *b, uint32_t xid, uint16_t flags,
                                  const struct of13_flow_stats *fs, unsigned n)
{
	of13_mp_start(b, OF13_MULTIPART_REPLY, xid, OF13_MP_FLOW, flags);
	for (unsigned i = 0; i < n; i++) {
		size_t start = b->len;
		obuf_put_u16(b, 0);
		obuf_put_u8(b, fs[i].table_id);
		obuf_put_u8(b, 0);
		obuf_put_u32(b, fs[i].duration_sec);
		obuf_put_u32(b, fs[i].duration_nsec);
		obuf_put_u16(b, fs[i].priority);
		obuf_put_u16(b, fs[i].idle_timeout);
		obuf_put_u16(b, fs[i].hard_timeout);
		obuf_put_u16(b, fs[i].flags);
		obuf_put_u32(b, 0);
		obuf_put_u64(b, fs[i].cookie);
		obuf_put_u64(b, fs[i].packet_count);
		obuf_put_u64(b, fs[i].byte_count);
		of13_match_encode(b, &fs[i].match);
		of13_instructions_encode(b, fs[i].instructions, fs[i].n_instructions);
		of13_put_len(b, start, b->len - start);
	}
}
