/* OXM matches (spec 7.2.3). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "internal.h"
#include "lib/mac.h"

#define OXM_CLASS_BASIC 0x8000
#define OFPMT_OXM       1

struct field_info {
	const char *name;
	uint8_t len;
	bool maskable;
	enum { F_INT, F_ETH, F_IPV4 } kind;
};

static const struct field_info fields[] = {
    [OF13_OXM_IN_PORT] = {"in_port", 4, false, F_INT},
    [OF13_OXM_ETH_DST] = {"eth_dst", 6, true, F_ETH},
    [OF13_OXM_ETH_SRC] = {"eth_src", 6, true, F_ETH},
    [OF13_OXM_ETH_TYPE] = {"eth_type", 2, false, F_INT},
    [OF13_OXM_VLAN_VID] = {"vlan_vid", 2, true, F_INT},
    [OF13_OXM_IP_PROTO] = {"ip_proto", 1, false, F_INT},
    [OF13_OXM_IPV4_SRC] = {"ipv4_src", 4, true, F_IPV4},
    [OF13_OXM_IPV4_DST] = {"ipv4_dst", 4, true, F_IPV4},
    [OF13_OXM_TCP_SRC] = {"tcp_src", 2, true, F_INT},
    [OF13_OXM_TCP_DST] = {"tcp_dst", 2, true, F_INT},
    [OF13_OXM_UDP_SRC] = {"udp_src", 2, true, F_INT},
    [OF13_OXM_UDP_DST] = {"udp_dst", 2, true, F_INT},
    [OF13_OXM_ICMPV4_TYPE] = {"icmpv4_type", 1, false, F_INT},
    [OF13_OXM_ICMPV4_CODE] = {"icmpv4_code", 1, false, F_INT},
    [OF13_OXM_ARP_OP] = {"arp_op", 2, false, F_INT},
    [OF13_OXM_ARP_SPA] = {"arp_spa", 4, true, F_IPV4},
    [OF13_OXM_ARP_TPA] = {"arp_tpa", 4, true, F_IPV4},
    [OF13_OXM_ARP_SHA] = {"arp_sha", 6, true, F_ETH},
    [OF13_OXM_ARP_THA] = {"arp_tha", 6, true, F_ETH},
};

static const struct field_info *field_info(unsigned field)
{
	if (field >= sizeof(fields) / sizeof(fields[0]) || !fields[field].name)
		return NULL;
	return &fields[field];
}

static void put_int(uint8_t *dst, unsigned len, uint64_t v)
{
	for (unsigned i = 0; i < len; i++)
		dst[len - 1 - i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_int(const uint8_t *src, unsigned len)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < len; i++)
		v = v << 8 | src[i];
	return v;
}

static struct of13_oxm *slot(struct of13_match *m, enum of13_oxm_field field, int *ret)
{
	const struct field_info *fi = field_info(field);
	*ret = 0;
	if (!fi) {
		*ret = -EINVAL;
		return NULL;
	}
	for (unsigned i = 0; i < m->n; i++) {
		if (m->oxm[i].field == field) {
			*ret = -EEXIST;
			return NULL;
		}
	}
	if (m->n == OF13_MATCH_MAX) {
		*ret = -ENOSPC;
		return NULL;
	}
	struct of13_oxm *o = &m->oxm[m->n++];
	*o = (struct of13_oxm){.field = field, .len = fi->len};
	return o;
}

int of13_match_add(struct of13_match *m, enum of13_oxm_field field, uint64_t value,
                   const uint64_t *mask)
{
	int r;
	const struct field_info *fi = field_info(field);
	if (fi && (fi->kind == F_ETH || (mask && !fi->maskable)))
		return -EINVAL;
	struct of13_oxm *o = slot(m, field, &r);
	if (!o)
		return r;
	put_int(o->value, o->len, value);
	if (mask) {
		o->has_mask = true;
		put_int(o->mask, o->len, *mask);
	}
	return 0;
}

int of13_match_add_eth(struct of13_match *m, enum of13_oxm_field field, const uint8_t addr[6],
                       const uint8_t *mask)
{
	int r;
	const struct field_info *fi = field_info(field);
	if (fi && fi->kind != F_ETH)
		return -EINVAL;
	struct of13_oxm *o = slot(m, field, &r);
	if (!o)
		return r;
	memcpy(o->value, addr, 6);
	if (mask) {
		o->has_mask = true;
		memcpy(o->mask, mask, 6);
	}
	return 0;
}

bool of13_match_get(const struct of13_match *m, enum of13_oxm_field field, uint64_t *ret_value,
                    uint64_t *ret_mask)
{
	for (unsigned i = 0; i < m->n; i++) {
		const struct of13_oxm *o = &m->oxm[i];
		if (o->field != field)
			continue;
		*ret_value = get_int(o->value, o->len);
		if (ret_mask)
			*ret_mask = o->has_mask ? get_int(o->mask, o->len) : UINT64_MAX;
		return true;
	}
	return false;
}

enum of13_err of13_oxm_decode(struct cursor *c, struct of13_oxm *ret)
{
	uint16_t class = cursor_u16(c);
	uint8_t fh = cursor_u8(c), len = cursor_u8(c);
	if (!cursor_ok(c))
		return OF13_ERR_BAD_MATCH_LEN;
	const uint8_t *payload = cursor_bytes(c, len);
	if (!payload)
		return OF13_ERR_BAD_MATCH_LEN;
	struct of13_oxm o = {.field = fh >> 1, .has_mask = fh & 1};
	const struct field_info *fi = field_info(o.field);
	if (class != OXM_CLASS_BASIC || !fi || (o.has_mask && !fi->maskable) ||
	    len != fi->len * (o.has_mask ? 2 : 1))
		return OF13_ERR_BAD_FIELD;
	o.len = fi->len;
	memcpy(o.value, payload, o.len);
	if (o.has_mask)
		memcpy(o.mask, payload + o.len, o.len);
	*ret = o;
	return OF13_OK;
}

void of13_oxm_encode(struct obuf *b, const struct of13_oxm *o)
{
	obuf_put_u16(b, OXM_CLASS_BASIC);
	obuf_put_u8(b, (uint8_t)(o->field << 1 | (o->has_mask ? 1 : 0)));
	obuf_put_u8(b, (uint8_t)(o->len * (o->has_mask ? 2 : 1)));
	obuf_put_bytes(b, o->value, o->len);
	if (o->has_mask)
		obuf_put_bytes(b, o->mask, o->len);
}

enum of13_err of13_match_decode(struct cursor *c, struct of13_match *ret)
{
	uint16_t type = cursor_u16(c), len = cursor_u16(c);
	if (!cursor_ok(c) || len < 4)
		return OF13_ERR_BAD_MATCH_LEN;
	if (type != OFPMT_OXM)
		return OF13_ERR_BAD_MATCH_TYPE;
	const uint8_t *fields_at = cursor_bytes(c, len - 4u);
	size_t pad = ((len + 7u) & ~7u) - len;
	if (!fields_at || !cursor_bytes(c, pad))
		return OF13_ERR_BAD_MATCH_LEN;
	struct cursor f = cursor_init(fields_at, len - 4u);
	struct of13_match m = {0};
	while (f.left) {
		struct of13_oxm o;
		enum of13_err e = of13_oxm_decode(&f, &o);
		if (e)
			return e;
		for (unsigned i = 0; i < m.n; i++)
			if (m.oxm[i].field == o.field)
				return OF13_ERR_DUP_FIELD;
		if (m.n == OF13_MATCH_MAX)
			return OF13_ERR_TOO_MANY;
		m.oxm[m.n++] = o;
	}
	*ret = m;
	return OF13_OK;
}

void of13_match_encode(struct obuf *b, const struct of13_match *m)
{
	size_t start = b->len;
	obuf_put_u16(b, OFPMT_OXM);
	obuf_put_u16(b, 0);
	for (unsigned i = 0; i < m->n; i++)
		of13_oxm_encode(b, &m->oxm[i]);
	size_t len = b->len - start;
	of13_put_len(b, start + 2, len);
	static const uint8_t zeros[8];
	obuf_put_bytes(b, zeros, ((len + 7) & ~(size_t)7) - len);
}

static void format_value(FILE *out, const struct field_info *fi, const uint8_t *v, unsigned len)
{
	switch (fi->kind) {
	case F_ETH: {
		char mac[MAC_STR_MAX];
		fputs(mac_format(v, mac), out);
		break;
	}
	case F_IPV4:
		fprintf(out, "%u.%u.%u.%u", v[0], v[1], v[2], v[3]);
		break;
	case F_INT: {
		uint64_t x = get_int(v, len);
		fprintf(out,
		        len == 2 && fi == &fields[OF13_OXM_ETH_TYPE] ? "0x%04" PRIx64 : "%" PRIu64,
		        x);
		break;
	}
	}
}

void of13_oxm_format(FILE *out, const struct of13_oxm *o)
{
	const struct field_info *fi = field_info(o->field);
	if (!fi) {
		fprintf(out, "field%u=?", o->field);
		return;
	}
	fprintf(out, "%s=", fi->name);
	format_value(out, fi, o->value, o->len);
	if (o->has_mask) {
		fputc('/', out);
		if (fi->kind == F_INT)
			fprintf(out, "0x%" PRIx64, get_int(o->mask, o->len));
		else
			format_value(out, fi, o->mask, o->len);
	}
}

void of13_match_format(FILE *out, const struct of13_match *m)
{
	if (m->n == 0) {
		fputs("any", out);
		return;
	}
	for (unsigned i = 0; i < m->n; i++) {
		if (i)
			fputc(',', out);
		of13_oxm_format(out, &m->oxm[i]);
	}
}
