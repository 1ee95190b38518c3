/* TPM public areas (TPM2B_PUBLIC) as they cross the network: strict
 * unmarshalling to one canonical encoding, marshalling, and their OpenSSL
 * keys (RSA, ECC NIST P-256/P-384). Shared by the TPM side and the
 * verifier.
 *
 * Everything here reads bytes that came over the network. Each TPM
 * structure is unmarshalled with tss2-mu, which checks every length
 * against the buffer, and the whole input must be consumed: trailing bytes
 * are refused, so one structure has one encoding. Error codes: -EINVAL for
 * a caller's mistake, -EBADMSG for a malformed input, -EACCES for an input
 * that is well formed but fails a check, -ENOMEM/-EIO for OpenSSL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tss2/tss2_mu.h>

#include "trust/internal.h"

bool trust_blob_ok(const struct trust_blob *b)
{
	return b && b->data && b->len > 0;
}

int trust_public_unmarshal(const struct trust_blob *b, const char *what, TPM2B_PUBLIC *ret_public,
                           char **ret_error)
{
	if (!trust_blob_ok(b)) {
		trust_err(ret_error, "%s: empty", what);
		return -EINVAL;
	}
	TPM2B_PUBLIC pub = {0};
	size_t off = 0;
	TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(b->data, b->len, &off, &pub);
	if (rc != TSS2_RC_SUCCESS) {
		trust_err(ret_error, "%s: not a TPM2B_PUBLIC (0x%x)", what, rc);
		return -EBADMSG;
	}
	if (off != b->len || pub.size != b->len - 2) {
		trust_err(ret_error, "%s: %zu bytes after the TPM2B_PUBLIC", what, b->len - off);
		return -EBADMSG;
	}
	/* One encoding only: the bytes must be what marshalling the decoded
	 * area gives (the TPM's name of the key is the hash of exactly those). */
	uint8_t buf[sizeof(TPMT_PUBLIC)];
	size_t len = 0;
	if (Tss2_MU_TPMT_PUBLIC_Marshal(&pub.publicArea, buf, sizeof(buf), &len) !=
	        TSS2_RC_SUCCESS ||
	    len != b->len - 2 || memcmp(buf, b->data + 2, len) != 0) {
		trust_err(ret_error, "%s: TPMT_PUBLIC not in canonical form", what);
		return -EBADMSG;
	}
	*ret_public = pub;
	return 0;
}

int trust_public_marshal(const TPM2B_PUBLIC *pub, struct trust_blob *ret_blob)
{
	uint8_t *buf = malloc(sizeof(TPM2B_PUBLIC));
	if (!buf)
		return -ENOMEM;
	size_t len = 0;
	if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(TPM2B_PUBLIC), &len) != TSS2_RC_SUCCESS) {
		free(buf);
		return -EINVAL;
	}
	ret_blob->data = buf;
	ret_blob->len = len;
	return 0;
}

/* ---- keys ---- */

static int pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **ret_pkey)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;
	int r = -EACCES;
	if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1) {
		*ret_pkey = pkey;
		r = 0;
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r;
}

static int rsa_pkey(const TPMT_PUBLIC *pub, EVP_PKEY **ret_pkey, char **ret_error)
{
	const TPMS_RSA_PARMS *p = &pub->parameters.rsaDetail;
	if (pub->unique.rsa.size == 0 || pub->unique.rsa.size * 8u != p->keyBits) {
		trust_err(ret_error, "RSA key: modulus of %u bytes for %u bits",
		          pub->unique.rsa.size, p->keyBits);
		return -EBADMSG;
	}
	/* Part 2, TPMS_RSA_PARMS: an exponent of zero means 2^16 + 1. */
	BIGNUM *n = BN_bin2bn(pub->unique.rsa.buffer, pub->unique.rsa.size, NULL);
	BIGNUM *e = BN_new();
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	int r = -ENOMEM;
	if (n && e && bld && BN_set_word(e, p->exponent ? p->exponent : 65537) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
		r = pkey_fromdata("RSA", bld, ret_pkey);
	if (r == -EACCES)
		trust_err(ret_error, "RSA key: OpenSSL refuses it");
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return r;
}

static const char *curve_name(TPMI_ECC_CURVE curve, size_t *ret_bytes)
{
	switch (curve) {
	case TPM2_ECC_NIST_P256:
		*ret_bytes = 32;
		return "P-256";
	case TPM2_ECC_NIST_P384:
		*ret_bytes = 48;
		return "P-384";
	default:
		return NULL;
	}
}

/* The uncompressed point 04 || x || y (SEC 1, 2.3.3), coordinates padded
 * to the curve's size. */
static int ecc_point(const TPMS_ECC_POINT *pt, size_t bytes, uint8_t *out, char **ret_error)
{
	if (pt->x.size == 0 || pt->x.size > bytes || pt->y.size == 0 || pt->y.size > bytes) {
		trust_err(ret_error, "ECC key: point of %u/%u bytes for a %zu-byte curve",
		          pt->x.size, pt->y.size, bytes);
		return -EBADMSG;
	}
	memset(out, 0, 1 + 2 * bytes);
	out[0] = 0x04;
	memcpy(out + 1 + bytes - pt->x.size, pt->x.buffer, pt->x.size);
	memcpy(out + 1 + 2 * bytes - pt->y.size, pt->y.buffer, pt->y.size);
	return 0;
}

static int ecc_pkey(const TPMT_PUBLIC *pub, EVP_PKEY **ret_pkey, char **ret_error)
{
	size_t bytes = 0;
	const char *name = curve_name(pub->parameters.eccDetail.curveID, &bytes);
	if (!name) {
		trust_err(ret_error, "ECC key: curve 0x%04x not supported",
		          pub->parameters.eccDetail.curveID);
		return -EACCES;
	}
	uint8_t point[1 + 2 * 48];
	int r = ecc_point(&pub->unique.ecc, bytes, point, ret_error);
	if (r < 0)
		return r;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	r = -ENOMEM;
	/* Decoding the point checks that it is on the curve. */
	if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, name, 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * bytes))
		r = pkey_fromdata("EC", bld, ret_pkey);
	if (r == -EACCES)
		trust_err(ret_error, "ECC key: not a point of %s", name);
	OSSL_PARAM_BLD_free(bld);
	ERR_clear_error();
	return r;
}

int trust_public_pkey(const TPMT_PUBLIC *pub, EVP_PKEY **ret_pkey, char **ret_error)
{
	switch (pub->type) {
	case TPM2_ALG_RSA:
		return rsa_pkey(pub, ret_pkey, ret_error);
	case TPM2_ALG_ECC:
		return ecc_pkey(pub, ret_pkey, ret_error);
	default:
		trust_err(ret_error, "key: type 0x%04x is neither RSA nor ECC", pub->type);
		return -EACCES;
	}
}
