/* The trust module's store tables (tables.h): admissions, trusted
 * measurements and attestations, with their encodings, apply, merge rules
 * and JSON. */
#include "tables.h"

#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/hex.h"
#include "trust/trust.h"

/* The later decision about a host wins: its admission, its attestation. */
static enum store_merge later_wins(const struct store_cmd *cmd, uint64_t row_time, bool exists)
{
	if (exists && row_time >= cmd->time_ms)
		return STORE_MERGE_SKIP;
	if (!exists && cmd->op == STORE_DELETE)
		return STORE_MERGE_SKIP;
	return STORE_MERGE_APPLY;
}

/* ---- admissions ---- */

static void admission_encode(struct obuf *b, const void *row)
{
	const struct trust_admission *a = row;
	obuf_put_str(b, a->host);
	obuf_put_str(b, a->ek_fp);
	obuf_put_str(b, a->ak_fp);
	obuf_put_str(b, a->measurement);
	obuf_put_str(b, a->mac);
	obuf_put_u64(b, a->dpid);
	obuf_put_u32(b, a->port);
	obuf_put_u64(b, a->time_ms);
	obuf_put_str(b, a->tls_fp);
}

/* Encodings 1-4: no TLS key. */
static void admission_decode_old(struct cursor *c, void *row, unsigned version)
{
	struct trust_admission *a = row;
	cursor_str(c, a->host, sizeof(a->host));
	cursor_str(c, a->ek_fp, sizeof(a->ek_fp));
	cursor_str(c, a->ak_fp, sizeof(a->ak_fp));
	cursor_str(c, a->measurement, sizeof(a->measurement));
	cursor_str(c, a->mac, sizeof(a->mac));
	a->dpid = cursor_u64(c);
	a->port = cursor_u32(c);
	a->time_ms = cursor_u64(c);
	(void)version;
}

static void admission_decode(struct cursor *c, void *row)
{
	struct trust_admission *a = row;
	admission_decode_old(c, row, 5);
	cursor_str(c, a->tls_fp, sizeof(a->tls_fp));
}

static int admission_cmp(const void *a, const void *b)
{
	return strcmp(((const struct trust_admission *)a)->host,
	              ((const struct trust_admission *)b)->host);
}

static json_t *admission_json(const void *row)
{
	const struct trust_admission *a = row;
	/* No key, no field: so the dumps of encodings 1-4 stay as they were. */
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s*}", "host", a->host, "ek_fp",
	                 a->ek_fp, "ak_fp", a->ak_fp, "measurement", a->measurement, "mac", a->mac,
	                 "dpid", (json_int_t)a->dpid, "port", (json_int_t)a->port, "time_ms",
	                 (json_int_t)a->time_ms, "tls_fp", a->tls_fp[0] ? a->tls_fp : NULL);
}

const struct trust_admission *trust_admission_by_key(const struct store_state *s,
                                                     const char *tls_fp)
{
	if (!tls_fp || !tls_fp[0])
		return NULL;
	for (size_t i = 0; i < store_count(s, TRUST_ADMISSIONS); i++) {
		const struct trust_admission *a = store_row(s, TRUST_ADMISSIONS, i);
		if (strcmp(a->tls_fp, tls_fp) == 0)
			return a;
	}
	return NULL;
}

const struct trust_admission *trust_admission_find(const struct store_state *s, const char *host)
{
	struct trust_admission key = {0};
	snprintf(key.host, sizeof(key.host), "%s", host);
	return store_table_get(s, TRUST_ADMISSIONS, &key);
}

static int admission_apply(struct store_state *s, const struct store_cmd *cmd,
                           struct store_result *res)
{
	const struct trust_admission *a = STORE_CMD_ROW(cmd, const struct trust_admission);
	if (cmd->op == STORE_PUT && !a->host[0]) {
		store_reject(res, "an admission needs a host");
		return 0;
	}
	if (cmd->op == STORE_PUT && a->tls_fp[0] && !hex_is_lower(a->tls_fp, TRUST_DIGEST_LEN)) {
		store_reject(res, "a TLS key's fingerprint is 64 lowercase hex digits (SHA-256)");
		return 0;
	}
	const struct trust_admission *other = trust_admission_by_key(s, a->tls_fp);
	if (cmd->op == STORE_PUT && other && strcmp(other->host, a->host) != 0) {
		store_reject(res, "the TLS key %.16s... is %s's already", a->tls_fp, other->host);
		return 0;
	}
	return store_apply_simple(s, cmd, res, "admission");
}

static enum store_merge admission_merge(const struct store_state *s, struct store_cmd *cmd,
                                        char **ret_reason)
{
	(void)ret_reason;
	const struct trust_admission *row = store_table_get(s, TRUST_ADMISSIONS, cmd->row);
	return later_wins(cmd, row ? row->time_ms : 0, row != NULL);
}

static const struct store_table admissions_table = {
    .id = TRUST_ADMISSIONS,
    .name = "admissions",
    .version = 1,
    .row_size = sizeof(struct trust_admission),
    .cmp = admission_cmp,
    .encode = admission_encode,
    .decode = admission_decode,
    .row_version = 5,
    .decode_old = admission_decode_old,
    .apply = admission_apply,
    .merge = admission_merge,
    .to_json = admission_json,
};

/* ---- trusted measurements ---- */

static void trusted_encode(struct obuf *b, const void *row)
{
	const struct trust_trusted *t = row;
	obuf_put_str(b, t->digest);
	obuf_put_str(b, t->note);
	obuf_put_u64(b, t->added_ms);
}

static void trusted_decode(struct cursor *c, void *row)
{
	struct trust_trusted *t = row;
	cursor_str(c, t->digest, sizeof(t->digest));
	cursor_str(c, t->note, sizeof(t->note));
	t->added_ms = cursor_u64(c);
}

static int trusted_cmp(const void *a, const void *b)
{
	return strcmp(((const struct trust_trusted *)a)->digest,
	              ((const struct trust_trusted *)b)->digest);
}

static json_t *trusted_json(const void *row)
{
	const struct trust_trusted *t = row;
	return json_pack("{s:s, s:s, s:I}", "digest", t->digest, "note", t->note, "added_ms",
	                 (json_int_t)t->added_ms);
}

static int trusted_apply(struct store_state *s, const struct store_cmd *cmd,
                         struct store_result *res)
{
	const char *d = STORE_CMD_ROW(cmd, const struct trust_trusted)->digest;
	if (!hex_is_lower(d, TRUST_DIGEST_LEN)) {
		store_reject(res, "a digest is 64 lowercase hex digits (SHA-256)");
		return 0;
	}
	if (cmd->op == STORE_PUT && store_table_get(s, TRUST_TRUSTED, cmd->row)) {
		store_reject(res, "%.16s... is already trusted", d);
		return 0;
	}
	return store_apply_simple(s, cmd, res, "trusted measurement");
}

static enum store_merge trusted_merge(const struct store_state *s, struct store_cmd *cmd,
                                      char **ret_reason)
{
	(void)ret_reason;
	bool present = store_table_get(s, TRUST_TRUSTED, cmd->row) != NULL;
	return (cmd->op == STORE_PUT) == present ? STORE_MERGE_SKIP : STORE_MERGE_APPLY;
}

static const struct store_table trusted_table = {
    .id = TRUST_TRUSTED,
    .name = "trusted",
    .version = 1,
    .row_size = sizeof(struct trust_trusted),
    .cmp = trusted_cmp,
    .encode = trusted_encode,
    .decode = trusted_decode,
    .apply = trusted_apply,
    .merge = trusted_merge,
    .to_json = trusted_json,
};

/* ---- attestations ---- */

static void attestation_encode(struct obuf *b, const void *row)
{
	const struct trust_attestation *a = row;
	obuf_put_str(b, a->host);
	obuf_put_u8(b, a->state);
	obuf_put_str(b, a->reason);
	obuf_put_str(b, a->ek_fp);
	obuf_put_str(b, a->measurement);
	obuf_put_u32(b, a->reset_count);
	obuf_put_u32(b, a->restart_count);
	obuf_put_u64(b, a->time_ms);
	obuf_put_str(b, a->tls_fp);
}

/* Encodings 3 and 4: no TLS key. */
static void attestation_decode_old(struct cursor *c, void *row, unsigned version)
{
	struct trust_attestation *a = row;
	cursor_str(c, a->host, sizeof(a->host));
	a->state = cursor_u8(c);
	cursor_str(c, a->reason, sizeof(a->reason));
	cursor_str(c, a->ek_fp, sizeof(a->ek_fp));
	cursor_str(c, a->measurement, sizeof(a->measurement));
	a->reset_count = cursor_u32(c);
	a->restart_count = cursor_u32(c);
	a->time_ms = cursor_u64(c);
	(void)version;
}

static void attestation_decode(struct cursor *c, void *row)
{
	struct trust_attestation *a = row;
	attestation_decode_old(c, row, 5);
	cursor_str(c, a->tls_fp, sizeof(a->tls_fp));
}

static int attestation_cmp(const void *a, const void *b)
{
	return strcmp(((const struct trust_attestation *)a)->host,
	              ((const struct trust_attestation *)b)->host);
}

const char *trust_attest_state_name(unsigned state)
{
	switch (state) {
	case TRUST_ATTEST_ADMITTED:
		return "admitted";
	case TRUST_ATTEST_REFUSED:
		return "refused";
	case TRUST_ATTEST_REVOKED:
		return "revoked";
	case TRUST_ATTEST_CHANGED:
		return "changed";
	}
	return "none";
}

static json_t *attestation_json(const void *row)
{
	const struct trust_attestation *a = row;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s*}", "host", a->host, "state",
	                 trust_attest_state_name(a->state), "reason", a->reason, "ek_fp", a->ek_fp,
	                 "measurement", a->measurement, "reset_count", (json_int_t)a->reset_count,
	                 "restart_count", (json_int_t)a->restart_count, "time_ms",
	                 (json_int_t)a->time_ms, "tls_fp", a->tls_fp[0] ? a->tls_fp : NULL);
}

const struct trust_attestation *trust_attestation_find(const struct store_state *s,
                                                       const char *host)
{
	struct trust_attestation key = {0};
	snprintf(key.host, sizeof(key.host), "%s", host);
	return store_table_get(s, TRUST_ATTESTATIONS, &key);
}

static int attestation_apply(struct store_state *s, const struct store_cmd *cmd,
                             struct store_result *res)
{
	const struct trust_attestation *a = STORE_CMD_ROW(cmd, const struct trust_attestation);
	if (cmd->op == STORE_PUT &&
	    (!a->host[0] || a->state < TRUST_ATTEST_ADMITTED || a->state > TRUST_ATTEST_CHANGED)) {
		store_reject(res, "an attestation needs a host and a state (admitted, refused, "
		                  "revoked, changed)");
		return 0;
	}
	if (cmd->op == STORE_PUT && a->tls_fp[0] && !hex_is_lower(a->tls_fp, TRUST_DIGEST_LEN)) {
		store_reject(res, "a TLS key's fingerprint is 64 lowercase hex digits (SHA-256)");
		return 0;
	}
	if (cmd->op == STORE_PUT && a->measurement[0] &&
	    !hex_is_lower(a->measurement, TRUST_DIGEST_LEN)) {
		store_reject(res, "a measurement is 64 lowercase hex digits (SHA-256)");
		return 0;
	}
	return store_apply_simple(s, cmd, res, "attestation");
}

static enum store_merge attestation_merge(const struct store_state *s, struct store_cmd *cmd,
                                          char **ret_reason)
{
	(void)ret_reason;
	const struct trust_attestation *row = store_table_get(s, TRUST_ATTESTATIONS, cmd->row);
	return later_wins(cmd, row ? row->time_ms : 0, row != NULL);
}

static const struct store_table attestations_table = {
    .id = TRUST_ATTESTATIONS,
    .name = "attestations",
    .version = 3,
    .row_size = sizeof(struct trust_attestation),
    .cmp = attestation_cmp,
    .encode = attestation_encode,
    .decode = attestation_decode,
    .row_version = 5,
    .decode_old = attestation_decode_old,
    .apply = attestation_apply,
    .merge = attestation_merge,
    .to_json = attestation_json,
};

const struct store_table *const trust_tables[] = {
    &admissions_table,
    &trusted_table,
    &attestations_table,
    NULL,
};
