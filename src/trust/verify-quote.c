/* Verification of another host's attestation key and of a quote it signed,
 * with no TPM: the AK's attributes (a restricted signing key the TPM made),
 * and the quote's signature, nonce, PCR selection and PCR digest.
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

#include "lib/hex.h"
#include "trust/internal.h"

/* ---- the attestation key ---- */

static const TPMA_OBJECT ak_required = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
                                       TPMA_OBJECT_SIGN_ENCRYPT;

/* Part 1, "Attestation": only a restricted signing key signs TPM
 * structures alone, because the TPM refuses to sign, with a restricted key,
 * a digest of anything that starts with TPM_GENERATED_VALUE (Part 3,
 * 20.2 TPM2_Sign). fixedTPM and sensitiveDataOrigin say the private key
 * was made in, and never leaves, this TPM. */
static int ak_parse(const struct trust_blob *ak_public, TPM2B_PUBLIC *ret_public, char **ret_error)
{
	TPM2B_PUBLIC pub;
	int r = trust_public_unmarshal(ak_public, "AK public", &pub, ret_error);
	if (r < 0)
		return r;
	const TPMT_PUBLIC *p = &pub.publicArea;
	const TPMS_ECC_PARMS *e = &p->parameters.eccDetail;
	if (p->type != TPM2_ALG_ECC) {
		trust_err(ret_error, "AK public: type 0x%04x, not ECC", p->type);
		return -EACCES;
	}
	if (p->nameAlg != TPM2_ALG_SHA256) {
		trust_err(ret_error, "AK public: nameAlg 0x%04x, not SHA-256", p->nameAlg);
		return -EACCES;
	}
	if ((p->objectAttributes & ak_required) != ak_required) {
		trust_err(ret_error,
		          "AK public: attributes 0x%08x lack fixedTPM, fixedParent, "
		          "sensitiveDataOrigin, restricted or sign",
		          p->objectAttributes);
		return -EACCES;
	}
	if (p->objectAttributes & TPMA_OBJECT_DECRYPT) {
		trust_err(ret_error, "AK public: attributes 0x%08x include decrypt",
		          p->objectAttributes);
		return -EACCES;
	}
	if (e->curveID != TPM2_ECC_NIST_P256) {
		trust_err(ret_error, "AK public: curve 0x%04x, not NIST P-256", e->curveID);
		return -EACCES;
	}
	if (e->scheme.scheme != TPM2_ALG_ECDSA ||
	    e->scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256) {
		trust_err(ret_error, "AK public: scheme 0x%04x/0x%04x, not ECDSA SHA-256",
		          e->scheme.scheme, e->scheme.details.ecdsa.hashAlg);
		return -EACCES;
	}
	if (e->symmetric.algorithm != TPM2_ALG_NULL || e->kdf.scheme != TPM2_ALG_NULL) {
		trust_err(ret_error, "AK public: a symmetric algorithm or KDF on a signing key");
		return -EACCES;
	}
	*ret_public = pub;
	return 0;
}

static int do_ak_check(const struct trust_blob *ak_public, char ret_fp[TRUST_FP_LEN],
                       uint8_t ret_name[2 + TRUST_DIGEST_LEN], char **ret_error)
{
	TPM2B_PUBLIC pub;
	int r = ak_parse(ak_public, &pub, ret_error);
	if (r < 0)
		return r;
	EVP_PKEY *key = NULL;
	r = trust_public_pkey(&pub.publicArea, &key, ret_error);
	if (r < 0)
		return r;
	EVP_PKEY_free(key);
	/* Part 1, 16 "Names": nameAlg || H_nameAlg(TPMT_PUBLIC); the marshalled
	 * TPMT_PUBLIC is the blob after its size (trust_public_unmarshal made
	 * sure it is canonical). */
	uint8_t digest[TRUST_DIGEST_LEN];
	trust_sha256(ak_public->data + 2, ak_public->len - 2, digest);
	if (ret_fp)
		hex_encode(digest, sizeof(digest), ret_fp);
	if (ret_name) {
		ret_name[0] = TPM2_ALG_SHA256 >> 8;
		ret_name[1] = TPM2_ALG_SHA256 & 0xff;
		memcpy(ret_name + 2, digest, sizeof(digest));
	}
	return 0;
}

int trust_ak_check(const struct trust_blob *ak_public, char ret_fp[TRUST_FP_LEN],
                   uint8_t ret_name[2 + TRUST_DIGEST_LEN], char **ret_error)
{
	trust_quiet_tss();
	char *e = NULL;
	int r = do_ak_check(ak_public, ret_fp, ret_name, &e);
	return trust_error_out(trust_fail_default(r, &e, "AK public"), e, ret_error);
}

/* ---- quotes ---- */

/* Part 2, TPMS_SIGNATURE_ECDSA: r and s as big-endian integers;
 * OpenSSL verifies the DER SEQUENCE of the two (SEC 1, C.5). */
static int quote_signature(const TPMT_SIGNATURE *sig, EVP_PKEY *key, const uint8_t *msg,
                           size_t msg_len, char **ret_error)
{
	if (sig->sigAlg != TPM2_ALG_ECDSA || sig->signature.ecdsa.hash != TPM2_ALG_SHA256) {
		trust_err(ret_error, "signature: algorithm 0x%04x/0x%04x, not ECDSA SHA-256",
		          sig->sigAlg, sig->signature.ecdsa.hash);
		return -EACCES;
	}
	const TPM2B_ECC_PARAMETER *sr = &sig->signature.ecdsa.signatureR;
	const TPM2B_ECC_PARAMETER *ss = &sig->signature.ecdsa.signatureS;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sr->buffer, sr->size, NULL);
	BIGNUM *s = BN_bin2bn(ss->buffer, ss->size, NULL);
	uint8_t *der = NULL;
	int der_len = -1, ret = -ENOMEM;
	if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		goto out;
	}
	der_len = i2d_ECDSA_SIG(es, &der);
	if (der_len <= 0)
		goto out;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1) {
		EVP_MD_CTX_free(md);
		goto out;
	}
	ret = EVP_DigestVerify(md, der, (size_t)der_len, msg, msg_len) == 1 ? 0 : -EACCES;
	EVP_MD_CTX_free(md);
	if (ret < 0)
		trust_err(ret_error, "signature: does not verify with the AK over the attest");
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	ERR_clear_error();
	return ret;
}

/* Part 2, TPMS_PCR_SELECTION: exactly @pcr of the SHA-256 bank. */
static int quote_selection(const TPML_PCR_SELECTION *sel, unsigned pcr, char **ret_error)
{
	if (sel->count != 1 || sel->pcrSelections[0].hash != TPM2_ALG_SHA256) {
		trust_err(ret_error, "attest: pcrSelect is not one SHA-256 selection");
		return -EACCES;
	}
	const TPMS_PCR_SELECTION *s = &sel->pcrSelections[0];
	if (s->sizeofSelect > sizeof(s->pcrSelect) || pcr / 8 >= s->sizeofSelect) {
		trust_err(ret_error, "attest: pcrSelect of %u bytes does not reach PCR %u",
		          s->sizeofSelect, pcr);
		return -EACCES;
	}
	for (unsigned i = 0; i < s->sizeofSelect; i++) {
		uint8_t want = i == pcr / 8 ? (uint8_t)(1u << (pcr % 8)) : 0;
		if (s->pcrSelect[i] != want) {
			trust_err(ret_error, "attest: pcrSelect is not exactly PCR %u", pcr);
			return -EACCES;
		}
	}
	return 0;
}

static int attest_parse(const struct trust_blob *attest, TPM2B_ATTEST *ret_attest,
                        TPMS_ATTEST *ret_info, char **ret_error)
{
	if (!trust_blob_ok(attest)) {
		trust_err(ret_error, "attest: empty");
		return -EINVAL;
	}
	size_t off = 0;
	if (Tss2_MU_TPM2B_ATTEST_Unmarshal(attest->data, attest->len, &off, ret_attest) !=
	        TSS2_RC_SUCCESS ||
	    off != attest->len) {
		trust_err(ret_error, "attest: not one TPM2B_ATTEST");
		return -EBADMSG;
	}
	off = 0;
	if (Tss2_MU_TPMS_ATTEST_Unmarshal(ret_attest->attestationData, ret_attest->size, &off,
	                                  ret_info) != TSS2_RC_SUCCESS ||
	    off != ret_attest->size) {
		trust_err(ret_error, "attest: not one TPMS_ATTEST");
		return -EBADMSG;
	}
	return 0;
}

static int do_quote_check(const struct trust_blob *ak_public, const struct trust_blob *attest,
                          const struct trust_blob *signature, const uint8_t *nonce,
                          size_t nonce_len, unsigned pcr, const uint8_t expected[TRUST_DIGEST_LEN],
                          struct trust_quote *ret_quote, char **ret_error)
{
	if (!nonce || nonce_len == 0 || !expected || pcr > 23) {
		trust_err(ret_error, "quote: no nonce or expected value, or PCR %u", pcr);
		return -EINVAL;
	}
	TPM2B_PUBLIC ak;
	int r = ak_parse(ak_public, &ak, ret_error);
	if (r < 0)
		return r;
	TPM2B_ATTEST a;
	TPMS_ATTEST info;
	r = attest_parse(attest, &a, &info, ret_error);
	if (r < 0)
		return r;
	if (!trust_blob_ok(signature)) {
		trust_err(ret_error, "signature: empty");
		return -EINVAL;
	}
	TPMT_SIGNATURE sig;
	size_t off = 0;
	if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(signature->data, signature->len, &off, &sig) !=
	        TSS2_RC_SUCCESS ||
	    off != signature->len) {
		trust_err(ret_error, "signature: not one TPMT_SIGNATURE");
		return -EBADMSG;
	}
	EVP_PKEY *key = NULL;
	r = trust_public_pkey(&ak.publicArea, &key, ret_error);
	if (r < 0)
		return r;
	r = quote_signature(&sig, key, a.attestationData, a.size, ret_error);
	EVP_PKEY_free(key);
	if (r < 0)
		return r;

	/* Part 2, TPMS_ATTEST: a structure the TPM signed itself starts with
	 * TPM_GENERATED_VALUE (Part 2, 6.2), and a quote is TPM_ST_ATTEST_QUOTE
	 * with TPMS_QUOTE_INFO: the selection and the hash of the
	 * selected PCRs' values concatenated (Part 3, 18.4). */
	if (info.magic != TPM2_GENERATED_VALUE) {
		trust_err(ret_error, "attest: magic 0x%08x, not TPM_GENERATED_VALUE", info.magic);
		return -EACCES;
	}
	if (info.type != TPM2_ST_ATTEST_QUOTE) {
		trust_err(ret_error, "attest: type 0x%04x, not a quote", info.type);
		return -EACCES;
	}
	if (info.extraData.size != nonce_len ||
	    memcmp(info.extraData.buffer, nonce, nonce_len) != 0) {
		trust_err(ret_error, "attest: extraData is not the nonce");
		return -EACCES;
	}
	r = quote_selection(&info.attested.quote.pcrSelect, pcr, ret_error);
	if (r < 0)
		return r;
	uint8_t want[TRUST_DIGEST_LEN];
	trust_sha256(expected, TRUST_DIGEST_LEN, want);
	const TPM2B_DIGEST *d = &info.attested.quote.pcrDigest;
	if (d->size != TRUST_DIGEST_LEN || memcmp(d->buffer, want, TRUST_DIGEST_LEN) != 0) {
		trust_err(ret_error, "attest: pcrDigest is not that of the expected PCR %u", pcr);
		return -EACCES;
	}
	if (ret_quote) {
		memcpy(ret_quote->pcr_value, expected, TRUST_DIGEST_LEN);
		ret_quote->reset_count = info.clockInfo.resetCount;
		ret_quote->restart_count = info.clockInfo.restartCount;
		ret_quote->clock_ms = info.clockInfo.clock;
		ret_quote->safe = info.clockInfo.safe == TPM2_YES;
	}
	return 0;
}

int trust_quote_check(const struct trust_blob *ak_public, const struct trust_blob *attest,
                      const struct trust_blob *signature, const uint8_t *nonce, size_t nonce_len,
                      unsigned pcr, const uint8_t expected[TRUST_DIGEST_LEN],
                      struct trust_quote *ret_quote, char **ret_error)
{
	trust_quiet_tss();
	char *e = NULL;
	int r = do_quote_check(ak_public, attest, signature, nonce, nonce_len, pcr, expected,
	                       ret_quote, &e);
	return trust_error_out(trust_fail_default(r, &e, "quote"), e, ret_error);
}
