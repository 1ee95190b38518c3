/* LLDP frames (lldp.h), and the signature and tokens that authenticate
 * them. A TLV header is 7 bits of type and 9 of length (802.1AB, 8.4); an
 * organisationally specific TLV's value is a company ID, a subtype and at
 * most 507 bytes (8.6). ETTM puts one subtype in each such TLV. */
#include "lldp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"

_Static_assert(LLDP_SIG_MAX >= CTL_TLS_SIG_MAX, "room for any signature the agent makes");

#define TLV_END      0
#define TLV_CHASSIS  1
#define TLV_PORT     2
#define TLV_TTL      3
#define TLV_SYSNAME  5
#define TLV_ORG      127
#define ID_LOCAL     7 /* chassis and port ID subtype "locally assigned" */
#define LLDP_TTL_SEC 3

/* ETTM's subtypes. PROBE and ANNOUNCE are enum lldp_kind. */
#define ORG_TOKEN 3 /* u64: the probe's token, or the one an announcement echoes */
#define ORG_KEY   4 /* the announcing agent's SubjectPublicKeyInfo, DER */
#define ORG_TIME  5 /* u64: its wall clock in ms when it signed */
#define ORG_SIG   6 /* the signature (signed_bytes()), DER */

/* What a signature is over begins with this, NUL included, so that no
 * other message the agent's key signs (a TLS CertificateVerify, say) can
 * be taken for an announcement. */
static const char sign_context[] = "ETTM LLDP announcement v2";

/* A locally administered company ID (IEEE CID: the X bit set), so ETTM's TLV
 * never collides with a registered organisation's. */
static const uint8_t ettm_oui[3] = {0x0a, 0xe7, 0x7d};

static const uint8_t lldp_dst[6] = {0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e};

static void tlv(struct obuf *b, unsigned type, const void *value, size_t len)
{
	obuf_put_u16(b, (uint16_t)(type << 9 | (len & 0x1ff)));
	obuf_put_bytes(b, value, len);
}

static void tlv_id(struct obuf *b, unsigned type, const char *id)
{
	uint8_t v[64];
	size_t n = strnlen(id, sizeof(v) - 1);
	v[0] = ID_LOCAL;
	memcpy(v + 1, id, n);
	tlv(b, type, v, n + 1);
}

static void tlv_org(struct obuf *b, uint8_t subtype, const void *value, size_t len)
{
	uint8_t v[4 + 507];
	if (len > sizeof(v) - 4) {
		b->failed = true;
		return;
	}
	memcpy(v, ettm_oui, 3);
	v[3] = subtype;
	memcpy(v + 4, value, len);
	tlv(b, TLV_ORG, v, len + 4);
}

static void tlv_org_u64(struct obuf *b, uint8_t subtype, uint64_t x)
{
	uint8_t v[8];
	for (int i = 0; i < 8; i++)
		v[i] = (uint8_t)(x >> (56 - 8 * i));
	tlv_org(b, subtype, v, sizeof(v));
}

size_t lldp_encode(uint8_t *buf, size_t size, const struct lldp_info *in)
{
	struct obuf b = {0};
	char id[48];
	obuf_put_bytes(&b, lldp_dst, 6);
	obuf_put_bytes(&b, in->src_mac, 6);
	obuf_put_u16(&b, LLDP_ETHERTYPE);

	struct obuf org = {0};
	if (in->kind == LLDP_PROBE) {
		snprintf(id, sizeof(id), "dpid:%016" PRIx64, in->dpid);
		tlv_id(&b, TLV_CHASSIS, id);
		snprintf(id, sizeof(id), "%" PRIu32, in->port);
		tlv_id(&b, TLV_PORT, id);
		obuf_put_u64(&org, in->dpid);
		obuf_put_u32(&org, in->port);
	} else {
		snprintf(id, sizeof(id), "ettm:%.31s", in->host);
		tlv_id(&b, TLV_CHASSIS, id);
		tlv_id(&b, TLV_PORT, "uplink");
		obuf_put_u32(&org, in->control_addr);
		obuf_put_u32(&org, in->guest_addr);
	}
	uint8_t ttl[2] = {0, LLDP_TTL_SEC};
	tlv(&b, TLV_TTL, ttl, 2);
	if (in->kind == LLDP_ANNOUNCE)
		tlv(&b, TLV_SYSNAME, in->host, strnlen(in->host, sizeof(in->host) - 1));
	tlv_org(&b, in->kind, org.data, org.len);
	if (in->token)
		tlv_org_u64(&b, ORG_TOKEN, in->token);
	if (in->kind == LLDP_ANNOUNCE && in->spki_len) {
		tlv_org(&b, ORG_KEY, in->spki, in->spki_len <= LLDP_SPKI_MAX ? in->spki_len : 0);
		tlv_org_u64(&b, ORG_TIME, in->time_ms);
		tlv_org(&b, ORG_SIG, in->sig, in->sig_len <= LLDP_SIG_MAX ? in->sig_len : 0);
	}
	tlv(&b, TLV_END, NULL, 0);

	size_t n = 0;
	if (!b.failed && !org.failed && b.len <= size) {
		memcpy(buf, b.data, b.len);
		n = b.len;
	}
	obuf_free(&org);
	obuf_free(&b);
	return n;
}

/* Takes one ETTM TLV's value (@v, @len bytes, after the company ID) into
 * @info; @have is the set of subtypes already seen. Returns 0 or -EBADMSG
 * (a length other than the subtype's, or a subtype seen twice). */
static int decode_org(const uint8_t *v, size_t len, struct lldp_info *info, unsigned *have)
{
	struct cursor o = cursor_init(v, len);
	uint8_t sub = cursor_u8(&o);
	if (!cursor_ok(&o) || sub == 0)
		return -EBADMSG;
	/* A later version's subtype: what this one knows still stands. */
	if (sub > ORG_SIG)
		return 0;
	if (*have & 1u << sub)
		return -EBADMSG;
	*have |= 1u << sub;
	size_t n = o.left;
	switch (sub) {
	case LLDP_PROBE:
	case LLDP_ANNOUNCE:
		if (info->kind || n != (sub == LLDP_PROBE ? 12 : 8))
			return -EBADMSG;
		info->kind = sub;
		if (sub == LLDP_PROBE) {
			info->dpid = cursor_u64(&o);
			info->port = cursor_u32(&o);
		} else {
			info->control_addr = cursor_u32(&o);
			info->guest_addr = cursor_u32(&o);
		}
		return 0;
	case ORG_TOKEN:
	case ORG_TIME:
		if (n != 8)
			return -EBADMSG;
		*(sub == ORG_TOKEN ? &info->token : &info->time_ms) = cursor_u64(&o);
		return 0;
	case ORG_KEY:
		if (n == 0 || n > LLDP_SPKI_MAX)
			return -EBADMSG;
		memcpy(info->spki, cursor_bytes(&o, n), n);
		info->spki_len = (uint16_t)n;
		return 0;
	default: /* ORG_SIG */
		if (n == 0 || n > LLDP_SIG_MAX)
			return -EBADMSG;
		memcpy(info->sig, cursor_bytes(&o, n), n);
		info->sig_len = (uint16_t)n;
		return 0;
	}
}

/* The subtypes each kind may carry besides its own. */
#define SIGNED  (1u << ORG_KEY | 1u << ORG_TIME | 1u << ORG_SIG)
#define OPTIONS ((unsigned[]){0, 1u << ORG_TOKEN, 1u << ORG_TOKEN | SIGNED})

int lldp_decode(const uint8_t *frame, size_t len, struct lldp_info *ret)
{
	struct cursor c = cursor_init(frame, len);
	struct lldp_info info = {0};
	cursor_bytes(&c, 6); /* destination */
	const uint8_t *src = cursor_bytes(&c, 6);
	if (cursor_u16(&c) != LLDP_ETHERTYPE || !cursor_ok(&c))
		return -EBADMSG;
	memcpy(info.src_mac, src, 6);

	bool have_name = false;
	unsigned seen = 0, have = 0;
	for (;;) {
		uint16_t h = cursor_u16(&c);
		unsigned type = h >> 9, tlen = h & 0x1ff;
		const uint8_t *v = cursor_bytes(&c, tlen);
		if (!cursor_ok(&c))
			return -EBADMSG;
		if (type == TLV_END)
			break;
		/* The first three TLVs are chassis, port and TTL, in order. */
		if (seen < 3 && type != seen + 1)
			return -EBADMSG;
		if (seen < 3 && tlen < 2)
			return -EBADMSG;
		seen++;
		if (type == TLV_SYSNAME) {
			if (tlen >= sizeof(info.host) || memchr(v, 0, tlen))
				return -EBADMSG;
			memcpy(info.host, v, tlen);
			info.host[tlen] = '\0';
			have_name = true;
		}
		if (type != TLV_ORG || tlen < 4 || memcmp(v, ettm_oui, 3) != 0)
			continue;
		if (decode_org(v + 3, tlen - 3, &info, &have) < 0)
			return -EBADMSG;
	}
	if (seen < 3)
		return -EBADMSG;
	if (!have)
		return -ENOENT;
	/* One kind, only its own extras, and a signature whole or not at all. */
	unsigned extra = have & ~(1u << LLDP_PROBE | 1u << LLDP_ANNOUNCE);
	if (!info.kind || (extra & ~OPTIONS[info.kind]) ||
	    ((have & SIGNED) && (have & SIGNED) != SIGNED))
		return -EBADMSG;
	if (info.kind == LLDP_ANNOUNCE && (!have_name || !info.host[0]))
		return -EBADMSG;
	*ret = info;
	return 0;
}

/* What an announcement's signature covers: the context, then everything
 * the master commits from it (the host's name and addresses, the source
 * MAC that becomes its location's), the probe token it echoes (which binds
 * it to the port and round the probe was sent for) and the time. Returns
 * the length, at most @size (104 is enough). */
static size_t signed_bytes(const struct lldp_info *in, uint8_t *buf, size_t size)
{
	struct obuf b = {0};
	size_t n = strnlen(in->host, sizeof(in->host) - 1);
	obuf_put_bytes(&b, sign_context, sizeof(sign_context));
	obuf_put_u8(&b, (uint8_t)n);
	obuf_put_bytes(&b, in->host, n);
	obuf_put_u32(&b, in->control_addr);
	obuf_put_u32(&b, in->guest_addr);
	obuf_put_bytes(&b, in->src_mac, 6);
	obuf_put_u64(&b, in->token);
	obuf_put_u64(&b, in->time_ms);
	size_t len = 0;
	if (!b.failed && b.len <= size) {
		memcpy(buf, b.data, b.len);
		len = b.len;
	}
	obuf_free(&b);
	return len;
}

int lldp_sign(struct lldp_info *info, const struct ctl_tls *tls, uint64_t now_ms)
{
	size_t spki_len, sig_len;
	const uint8_t *spki = ctl_tls_spki(tls, &spki_len);
	if (spki_len == 0 || spki_len > LLDP_SPKI_MAX)
		return -EINVAL;
	info->time_ms = now_ms;
	uint8_t data[104];
	size_t n = signed_bytes(info, data, sizeof(data));
	if (!n)
		return -ENOMEM;
	int r = ctl_tls_sign(tls, data, n, info->sig, sizeof(info->sig), &sig_len);
	if (r < 0)
		return r;
	memcpy(info->spki, spki, spki_len);
	info->spki_len = (uint16_t)spki_len;
	info->sig_len = (uint16_t)sig_len;
	return 0;
}

int lldp_verify(const struct lldp_info *info, const char *tls_fp, uint64_t now_ms)
{
	if (!info->spki_len || !info->sig_len)
		return -ENOKEY;
	char fp[CTL_TLS_FP_LEN];
	ctl_tls_fp_of_spki(info->spki, info->spki_len, fp);
	if (strcmp(fp, tls_fp) != 0)
		return -EKEYREJECTED;
	uint64_t skew = now_ms > info->time_ms ? now_ms - info->time_ms : info->time_ms - now_ms;
	if (skew > LLDP_SKEW_MS)
		return -ETIME;
	uint8_t data[104];
	size_t n = signed_bytes(info, data, sizeof(data));
	if (!n || ctl_tls_verify(info->spki, info->spki_len, data, n, info->sig, info->sig_len) < 0)
		return -EBADMSG;
	return 0;
}

const char *lldp_verify_why(int r)
{
	switch (r) {
	case 0:
		return "good";
	case -ENOKEY:
		return "not signed";
	case -EKEYREJECTED:
		return "signed with a key that is not its admission's";
	case -ETIME:
		return "signed at a time more than 30 s from this clock";
	default:
		return "its signature is not good";
	}
}

void lldp_tokens_roll(struct lldp_tokens *t, uint64_t fresh)
{
	t->before = t->now;
	t->now = fresh;
}

bool lldp_tokens_match(const struct lldp_tokens *t, uint64_t token)
{
	return token != 0 && (token == t->now || token == t->before);
}
