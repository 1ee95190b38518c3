/* Attestation: the checks of the join protocol's messages, with no store
 * and no TPM (so they are fuzzed): the hex fields of the peer messages, a
 * trust.challenge's EK certificate and AK, and the quote of a trust.prove
 * or a trust.quote answer. */
#include "attest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/tls.h"
#include "lib/cleanup.h"
#include "lib/error.h"
#include "lib/hex.h"
#include "trust/attest-internal.h"

json_t *attest_hex_json(const uint8_t *data, size_t len)
{
	char *s = hex_encode_new(data, len);
	json_t *j = s ? json_string(s) : NULL;
	free(s);
	return j;
}

/* Field @name of @args as bytes, at most @max of them. */
int attest_arg_hex(json_t *args, const char *name, size_t max, struct trust_blob *ret,
                   char **ret_error)
{
	const char *s = json_string_value(json_object_get(args, name));
	size_t n = s ? strlen(s) : 0;
	if (!s || n == 0 || n % 2 || n / 2 > max)
		goto bad;
	uint8_t *data;
	size_t len;
	int r = hex_decode(s, &data, &len);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		goto bad;
	*ret = (struct trust_blob){data, len};
	return 0;
bad:
	return error_set(ret_error, -EINVAL, "field \"%s\": expected 1 to %zu bytes in hex", name,
	                 max);
}

/* Like attest_arg_hex(), for a field of exactly @len bytes into @out. */
int attest_arg_hex_fixed(json_t *args, const char *name, uint8_t *out, size_t len, char **ret_error)
{
	struct trust_blob b = {0};
	int r = attest_arg_hex(args, name, len, &b, ret_error);
	if (r == 0 && b.len != len)
		r = error_set(ret_error, -EINVAL, "field \"%s\": expected %zu bytes in hex", name,
		              len);
	if (r == 0)
		memcpy(out, b.data, len);
	trust_blob_done(&b);
	return r;
}

void attest_bind_nonce(const uint8_t nonce[TRUST_NONCE_LEN], const char *tls_fp,
                       uint8_t ret[TRUST_NONCE_LEN])
{
	uint8_t data[TRUST_NONCE_LEN + TRUST_DIGEST_LEN] = {0};
	memcpy(data, nonce, TRUST_NONCE_LEN);
	if (tls_fp && tls_fp[0])
		hex_decode_into(tls_fp, data + TRUST_NONCE_LEN, TRUST_DIGEST_LEN);
	trust_sha256(data, sizeof(data), ret);
}

int attest_arg_tls_key(json_t *args, char ret_fp[TRUST_FP_LEN], char **ret_error)
{
	struct trust_blob spki = {0};
	int r = attest_arg_hex(args, "tls_spki", 1024, &spki, ret_error);
	if (r < 0)
		return r;
	ctl_tls_fp_of_spki(spki.data, spki.len, ret_fp);
	trust_blob_done(&spki);
	return 0;
}

bool attest_is_digest(const char *s)
{
	return hex_is_lower(s, TRUST_DIGEST_LEN);
}

void attest_claim_done(struct attest_claim *c)
{
	trust_blob_done(&c->ek_public);
	trust_blob_done(&c->ak_public);
}

int attest_check_challenge(json_t *args, const char *ca, struct attest_claim *ret_claim,
                           char **ret_error)
{
	struct attest_claim c = {0};
	struct trust_blob cert = {0};
	_cleanup_free_ char *why = NULL;
	int r;
	if ((r = attest_arg_hex(args, "ek_cert", 8192, &cert, ret_error)) < 0 ||
	    (r = attest_arg_hex(args, "ek_public", 1024, &c.ek_public, ret_error)) < 0 ||
	    (r = attest_arg_hex(args, "ak_public", 1024, &c.ak_public, ret_error)) < 0)
		goto out;
	if (trust_ek_check(&cert, &c.ek_public, ca, c.ek_fp, &why) < 0) {
		r = error_set(ret_error, -EPERM, "EK certificate: %s", WHY(why));
		goto out;
	}
	if (trust_ak_check(&c.ak_public, c.ak_fp, c.ak_name, &why) < 0) {
		r = error_set(ret_error, -EPERM, "AK: %s", WHY(why));
		goto out;
	}
	*ret_claim = c;
	c = (struct attest_claim){0};
out:
	trust_blob_done(&cert);
	attest_claim_done(&c);
	return r;
}

int attest_check_quote(json_t *args, const struct trust_blob *ak,
                       const uint8_t nonce[TRUST_NONCE_LEN], unsigned pcr,
                       char ret_ak_fp[TRUST_FP_LEN], struct trust_quote *ret_quote,
                       char **ret_error)
{
	struct trust_blob own = {0}, attest = {0}, sig = {0};
	const char *measurement = json_string_value(json_object_get(args, "measurement"));
	uint8_t expected[TRUST_DIGEST_LEN], name[2 + TRUST_DIGEST_LEN];
	char fp[TRUST_FP_LEN] = "";
	_cleanup_free_ char *why = NULL;
	int r;
	if (!attest_is_digest(measurement))
		return error_set(ret_error, -EINVAL,
		                 "field \"measurement\": expected 64 lowercase hex digits");
	hex_decode_into(measurement, expected, sizeof(expected));
	if ((!ak && (r = attest_arg_hex(args, "ak_public", 1024, &own, ret_error)) < 0) ||
	    (r = attest_arg_hex(args, "attest", 4096, &attest, ret_error)) < 0 ||
	    (r = attest_arg_hex(args, "signature", 1024, &sig, ret_error)) < 0)
		goto out;
	if (!ak && trust_ak_check(&own, fp, name, &why) < 0) {
		r = error_set(ret_error, -EPERM, "AK: %s", WHY(why));
		goto out;
	}
	if (trust_quote_check(ak ? ak : &own, &attest, &sig, nonce, TRUST_NONCE_LEN, pcr, expected,
	                      ret_quote, &why) < 0) {
		r = error_set(ret_error, -EPERM, "quote: %s", WHY(why));
		goto out;
	}
	if (ret_ak_fp)
		memcpy(ret_ak_fp, fp, TRUST_FP_LEN);
	r = 0;
out:
	trust_blob_done(&own);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
	return r;
}
