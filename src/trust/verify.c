/* Verification of what another host's TPM says, with no TPM: its EK
 * certificate, its attestation key, a quote it signed; and the software
 * half of credential activation (TPM2_MakeCredential).
 *
 * Everything here reads bytes that came over the network. Each TPM
 * structure is unmarshalled with tss2-mu, which checks every length
 * against the buffer, and the whole input must be consumed: trailing bytes
 * are refused, so one structure has one encoding. Error codes: -EINVAL for
 * a caller's mistake, -EBADMSG for a malformed input, -EACCES for an input
 * that is well formed but fails a check, -ENOMEM/-EIO for OpenSSL. */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

#include "lib/error.h"
#include "lib/hex.h"
#include "trust/internal.h"

void trust_err(char **ret_error, const char *fmt, ...)
{
	if (!ret_error)
		return;
	free(*ret_error);
	va_list ap;
	va_start(ap, fmt);
	error_setv(ret_error, 0, fmt, ap);
	va_end(ap);
}

/* tpm2-tss logs to stderr by default, and tss2-mu does so for every
 * malformed structure: input from the network must not reach the daemon's
 * log that way (this module reports through @ret_error, rate limiting is the
 * caller's). TSS2_LOG set by an operator still wins. Called before any
 * tss2 function; tss2 reads the variable at its first log call. */
static void quiet_once(void)
{
	setenv("TSS2_LOG", "all+none", 0);
}

void trust_quiet_tss(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, quiet_once);
}

int trust_fail_default(int r, char **ret_error, const char *what)
{
	if (r < 0 && ret_error && !*ret_error)
		trust_err(ret_error, "%s: %s", what, strerror(-r));
	return r;
}

int trust_error_out(int r, char *error, char **ret_error)
{
	if (r < 0 && ret_error)
		*ret_error = error;
	else
		free(error);
	return r;
}

static bool blob_ok(const struct trust_blob *b)
{
	return b && b->data && b->len > 0;
}

int trust_public_unmarshal(const struct trust_blob *b, const char *what, TPM2B_PUBLIC *ret_public,
                           char **ret_error)
{
	if (!blob_ok(b)) {
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

/* ---- EK certificate ---- */

static int cert_parse(const uint8_t *der, size_t der_len, X509 **ret_cert, char **ret_error)
{
	if (!der || der_len == 0 || der_len > 65536) {
		trust_err(ret_error, "EK certificate: %zu bytes", der_len);
		return -EBADMSG;
	}
	const uint8_t *p = der;
	X509 *cert = d2i_X509(NULL, &p, (long)der_len);
	if (!cert || p != der + der_len) {
		X509_free(cert);
		ERR_clear_error();
		trust_err(ret_error, "EK certificate: not one DER X.509 certificate");
		return -EBADMSG;
	}
	*ret_cert = cert;
	return 0;
}

static int cert_key_matches(X509 *cert, const TPMT_PUBLIC *pub, char **ret_error)
{
	EVP_PKEY *key = NULL;
	int r = trust_public_pkey(pub, &key, ret_error);
	if (r < 0)
		return r;
	EVP_PKEY *cert_key = X509_get0_pubkey(cert);
	if (!cert_key || EVP_PKEY_eq(cert_key, key) != 1) {
		trust_err(ret_error, "EK public: not the key of the EK certificate");
		r = -EACCES;
	}
	EVP_PKEY_free(key);
	ERR_clear_error();
	return r;
}

int trust_cert_matches_public(const uint8_t *der, size_t der_len, const TPMT_PUBLIC *pub,
                              char **ret_error)
{
	X509 *cert = NULL;
	int r = cert_parse(der, der_len, &cert, ret_error);
	if (r < 0)
		return r;
	r = cert_key_matches(cert, pub, ret_error);
	X509_free(cert);
	return r;
}

/* Every certificate of a PEM file; other PEM blocks (keys) are skipped. */
static int load_pem_certs(X509_STORE *store, const char *path, unsigned *count)
{
	BIO *bio = BIO_new_file(path, "r");
	if (!bio)
		return -errno ? -errno : -EIO;
	X509 *cert;
	int r = 0;
	while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(store, cert) != 1)
			r = -ENOMEM;
		else
			(*count)++;
		X509_free(cert);
	}
	ERR_clear_error();
	BIO_free(bio);
	return r;
}

static int load_cas(X509_STORE *store, const char *ca_path, char **ret_error)
{
	struct stat st;
	if (!ca_path || stat(ca_path, &st) < 0) {
		int r = ca_path ? -errno : -EINVAL;
		trust_err(ret_error, "CA path %s: %s", ca_path ? ca_path : "(none)", strerror(-r));
		return r;
	}
	unsigned count = 0;
	int r = 0;
	if (!S_ISDIR(st.st_mode)) {
		r = load_pem_certs(store, ca_path, &count);
	} else {
		DIR *d = opendir(ca_path);
		if (!d)
			r = -errno;
		struct dirent *e;
		while (d && r == 0 && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[4096];
			struct stat fst;
			snprintf(path, sizeof(path), "%s/%s", ca_path, e->d_name);
			if (stat(path, &fst) == 0 && S_ISREG(fst.st_mode))
				r = load_pem_certs(store, path, &count);
		}
		if (d)
			closedir(d);
	}
	if (r == 0 && count == 0)
		r = -ENOENT;
	if (r < 0)
		trust_err(ret_error, "CA path %s: %s", ca_path,
		          r == -ENOENT ? "no PEM certificates" : strerror(-r));
	return r;
}

/* EK certificates carry the TPM's identity in extensions that OpenSSL does
 * not interpret, and the TCG EK Credential Profile (Subject Alternative Name) requires
 * the subjectAltName to be critical when the subject is empty. OpenSSL
 * understands a critical subjectAltName; some manufacturers also mark the
 * subjectDirectoryAttributes (the TPM specification version)
 * critical, which OpenSSL reports as X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION.
 * Rather than X509_V_FLAG_IGNORE_CRITICAL (which would accept any unknown
 * critical extension, on the CAs too), this callback forgives that error
 * only when every critical extension OpenSSL does not handle is one of
 * these known ones. */
static const char *const tcg_critical_ok[] = {
    "2.5.29.17", /* subjectAltName: TPM manufacturer, model, version */
    "2.5.29.9",  /* subjectDirectoryAttributes: TPM specification */
};

static bool only_known_critical(X509 *cert)
{
	for (int i = 0; i < X509_get_ext_count(cert); i++) {
		X509_EXTENSION *ext = X509_get_ext(cert, i);
		if (!X509_EXTENSION_get_critical(ext) || X509_supported_extension(ext))
			continue;
		char oid[80];
		OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(ext), 1);
		bool known = false;
		for (size_t k = 0; k < sizeof(tcg_critical_ok) / sizeof(tcg_critical_ok[0]); k++)
			known |= strcmp(oid, tcg_critical_ok[k]) == 0;
		if (!known)
			return false;
	}
	return true;
}

static int ek_verify_cb(int ok, X509_STORE_CTX *ctx)
{
	if (ok)
		return 1;
	if (X509_STORE_CTX_get_error(ctx) != X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION)
		return 0;
	X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
	return cert && only_known_critical(cert);
}

static int do_ek_check(const struct trust_blob *cert, const struct trust_blob *ek_public,
                       const char *ca_path, char ret_fp[TRUST_FP_LEN], char **ret_error)
{
	if (!cert || !ret_fp) {
		trust_err(ret_error, "EK certificate: missing");
		return -EINVAL;
	}
	X509 *x = NULL;
	int r = cert_parse(cert->data, cert->len, &x, ret_error);
	if (r < 0)
		return r;
	TPM2B_PUBLIC pub;
	r = trust_public_unmarshal(ek_public, "EK public", &pub, ret_error);
	if (r < 0)
		goto out;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	r = -ENOMEM;
	if (!store || !ctx)
		goto out_store;
	r = load_cas(store, ca_path, ret_error);
	if (r < 0)
		goto out_store;
	r = -ENOMEM;
	if (X509_STORE_CTX_init(ctx, store, x, NULL) != 1)
		goto out_store;
	X509_STORE_CTX_set_verify_cb(ctx, ek_verify_cb);
	if (X509_verify_cert(ctx) != 1) {
		int err = X509_STORE_CTX_get_error(ctx);
		trust_err(ret_error, "EK certificate: %s (depth %d)",
		          X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(ctx));
		r = -EACCES;
		goto out_store;
	}
	r = cert_key_matches(x, &pub.publicArea, ret_error);
	if (r < 0)
		goto out_store;
	uint8_t fp[TRUST_DIGEST_LEN];
	trust_sha256(cert->data, cert->len, fp);
	hex_encode(fp, sizeof(fp), ret_fp);
out_store:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
out:
	X509_free(x);
	return r;
}

int trust_ek_check(const struct trust_blob *cert, const struct trust_blob *ek_public,
                   const char *ca_path, char ret_fp[TRUST_FP_LEN], char **ret_error)
{
	trust_quiet_tss();
	char *e = NULL;
	int r = do_ek_check(cert, ek_public, ca_path, ret_fp, &e);
	return trust_error_out(trust_fail_default(r, &e, "EK certificate"), e, ret_error);
}

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

/* ---- credential protection ---- */

/* Part 1, 11.4.10.2 "KDFa": K(i) = HMAC(key, [i]32 || Label || 00 ||
 * ContextU || ContextV || [L]32) for i = 1.., concatenated, first L bits. */
static int kdfa_sha256(const uint8_t *key, size_t key_len, const char *label, const uint8_t *u,
                       size_t u_len, uint32_t bits, uint8_t *out)
{
	size_t label_len = strlen(label) + 1;
	uint8_t in[4 + 32 + 64 + 4];
	if (label_len > 32 || u_len > 64 || bits % 8)
		return -EINVAL;
	size_t need = bits / 8;
	for (uint32_t i = 1; need > 0; i++) {
		size_t n = 0;
		in[n++] = i >> 24, in[n++] = i >> 16, in[n++] = i >> 8, in[n++] = i;
		memcpy(in + n, label, label_len);
		n += label_len;
		if (u_len)
			memcpy(in + n, u, u_len);
		n += u_len;
		in[n++] = bits >> 24, in[n++] = bits >> 16, in[n++] = bits >> 8, in[n++] = bits;
		uint8_t k[TRUST_DIGEST_LEN];
		unsigned int k_len = sizeof(k);
		if (!HMAC(EVP_sha256(), key, (int)key_len, in, n, k, &k_len))
			return -ENOMEM;
		size_t take = need < sizeof(k) ? need : sizeof(k);
		memcpy(out, k, take);
		out += take;
		need -= take;
	}
	return 0;
}

/* Part 1, annex B "RSA", secret sharing: the seed travels RSA-OAEP encrypted to the EK, with
 * SHA-256 (the EK's nameAlg) and the label "IDENTITY" and its NUL. */
static int rsa_seed(const TPMT_PUBLIC *ek, uint8_t seed[TRUST_DIGEST_LEN],
                    TPM2B_ENCRYPTED_SECRET *ret_secret, char **ret_error)
{
	EVP_PKEY *key = NULL;
	int r = trust_public_pkey(ek, &key, ret_error);
	if (r < 0)
		return r;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	static const char label[] = "IDENTITY";
	uint8_t *l = OPENSSL_memdup(label, sizeof(label));
	size_t out_len = sizeof(ret_secret->secret);
	r = -ENOMEM;
	if (!ctx || !l || RAND_bytes(seed, TRUST_DIGEST_LEN) != 1 ||
	    EVP_PKEY_encrypt_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1)
		goto out;
	if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, l, sizeof(label)) != 1)
		goto out;
	l = NULL;
	if (EVP_PKEY_encrypt(ctx, ret_secret->secret, &out_len, seed, TRUST_DIGEST_LEN) != 1) {
		trust_err(ret_error, "EK public: RSA-OAEP encryption failed");
		r = -EIO;
		goto out;
	}
	ret_secret->size = (UINT16)out_len;
	r = 0;
out:
	OPENSSL_free(l);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return r;
}

/* Part 1, 11.4.10.3 "KDFe": K(i) = H([i]32 || Z || Label || 00 ||
 * PartyUInfo || PartyVInfo) for i = 1.., concatenated; here 256 bits, one
 * SHA-256 block. */
static void kdfe_sha256(const uint8_t *z, size_t z_len, const char *label, const uint8_t *u,
                        size_t u_len, const uint8_t *v, size_t v_len, uint8_t out[TRUST_DIGEST_LEN])
{
	uint8_t in[4 + 66 + 16 + 66 + 66];
	size_t n = 0, label_len = strlen(label) + 1;
	in[n++] = 0, in[n++] = 0, in[n++] = 0, in[n++] = 1;
	memcpy(in + n, z, z_len);
	n += z_len;
	memcpy(in + n, label, label_len);
	n += label_len;
	memcpy(in + n, u, u_len);
	n += u_len;
	memcpy(in + n, v, v_len);
	n += v_len;
	trust_sha256(in, n, out);
}

/* Part 1, annex C, ECC secret sharing: the seed is agreed by one-pass ECDH
 * (C(1, 1, ECC CDH)) between an ephemeral key and the EK; the ephemeral
 * public point is the encrypted secret. seed = KDFe(Z, "IDENTITY",
 * ephemeral x, EK x). */
static int ecc_seed(const TPMT_PUBLIC *ek, uint8_t seed[TRUST_DIGEST_LEN],
                    TPM2B_ENCRYPTED_SECRET *ret_secret, char **ret_error)
{
	const size_t bytes = 32; /* NIST P-256 */
	EVP_PKEY *peer = NULL;
	int r = trust_public_pkey(ek, &peer, ret_error);
	if (r < 0)
		return r;
	EVP_PKEY *eph = EVP_EC_gen("P-256");
	EVP_PKEY_CTX *ctx = eph ? EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL) : NULL;
	uint8_t z[32], point[1 + 2 * 32], ek_x[32] = {0};
	size_t z_len = sizeof(z), point_len = 0;
	r = -ENOMEM;
	if (!ctx || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, z, &z_len) != 1 || z_len != bytes ||
	    EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
	                                    &point_len) != 1 ||
	    point_len != sizeof(point) || point[0] != 0x04) {
		trust_err(ret_error, "EK public: ECDH with the EK failed");
		goto out;
	}
	const TPM2B_ECC_PARAMETER *x = &ek->unique.ecc.x;
	memcpy(ek_x + bytes - x->size, x->buffer, x->size); /* size checked by the key */
	kdfe_sha256(z, z_len, "IDENTITY", point + 1, bytes, ek_x, bytes, seed);
	TPMS_ECC_POINT pt = {.x.size = (UINT16)bytes, .y.size = (UINT16)bytes};
	memcpy(pt.x.buffer, point + 1, bytes);
	memcpy(pt.y.buffer, point + 1 + bytes, bytes);
	size_t off = 0;
	if (Tss2_MU_TPMS_ECC_POINT_Marshal(&pt, ret_secret->secret, sizeof(ret_secret->secret),
	                                   &off) != TSS2_RC_SUCCESS)
		goto out;
	ret_secret->size = (UINT16)off;
	r = 0;
out:
	OPENSSL_cleanse(z, sizeof(z));
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(eph);
	EVP_PKEY_free(peer);
	ERR_clear_error();
	return r;
}

static int ek_for_credential(const struct trust_blob *ek_public, TPM2B_PUBLIC *ret_public,
                             char **ret_error)
{
	TPM2B_PUBLIC pub;
	int r = trust_public_unmarshal(ek_public, "EK public", &pub, ret_error);
	if (r < 0)
		return r;
	const TPMT_PUBLIC *p = &pub.publicArea;
	TPMA_OBJECT need = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
	if (p->nameAlg != TPM2_ALG_SHA256 || (p->objectAttributes & need) != need) {
		trust_err(ret_error,
		          "EK public: not a restricted decryption key with SHA-256 names");
		return -EACCES;
	}
	const TPMT_SYM_DEF_OBJECT *sym;
	if (p->type == TPM2_ALG_RSA) {
		sym = &p->parameters.rsaDetail.symmetric;
	} else if (p->type == TPM2_ALG_ECC &&
	           p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256) {
		sym = &p->parameters.eccDetail.symmetric;
	} else {
		trust_err(ret_error,
		          "EK public: type 0x%04x: only RSA and ECC NIST P-256 EKs are supported",
		          p->type);
		return -EOPNOTSUPP;
	}
	if (sym->algorithm != TPM2_ALG_AES || sym->keyBits.aes != 128 ||
	    sym->mode.aes != TPM2_ALG_CFB) {
		trust_err(ret_error, "EK public: symmetric algorithm is not AES-128-CFB");
		return -EACCES;
	}
	*ret_public = pub;
	return 0;
}

/* Part 1, 24 "Credential Protection": the credential is encrypted with a
 * key from KDFa(seed, "STORAGE", name) (24.4, AES-CFB, IV zero) and bound to
 * the name of the key it is for by an HMAC with KDFa(seed, "INTEGRITY")
 * (24.5) over encIdentity || name. The TPM recovers the seed with the EK
 * and only releases the credential if the HMAC matches the name of an
 * object loaded beside the EK. */
static int do_make_credential(const struct trust_blob *ek_public,
                              const uint8_t ak_name[2 + TRUST_DIGEST_LEN], const uint8_t *plain,
                              size_t plain_len, struct trust_blob *ret_credential,
                              struct trust_blob *ret_secret, char **ret_error)
{
	if (!ak_name || !plain || plain_len == 0 || plain_len > TRUST_DIGEST_LEN ||
	    !ret_credential || !ret_secret) {
		trust_err(ret_error, "credential: %zu bytes (1 to %d)", plain_len,
		          TRUST_DIGEST_LEN);
		return -EINVAL;
	}
	TPM2B_PUBLIC ek;
	int r = ek_for_credential(ek_public, &ek, ret_error);
	if (r < 0)
		return r;
	uint8_t seed[TRUST_DIGEST_LEN];
	TPM2B_ENCRYPTED_SECRET secret = {0};
	if (ek.publicArea.type == TPM2_ALG_RSA)
		r = rsa_seed(&ek.publicArea, seed, &secret, ret_error);
	else
		r = ecc_seed(&ek.publicArea, seed, &secret, ret_error);
	if (r < 0)
		return r;
	const size_t name_len = 2 + TRUST_DIGEST_LEN;
	uint8_t sym_key[16], hmac_key[TRUST_DIGEST_LEN];
	r = kdfa_sha256(seed, sizeof(seed), "STORAGE", ak_name, name_len, 128, sym_key);
	if (r == 0)
		r = kdfa_sha256(seed, sizeof(seed), "INTEGRITY", NULL, 0, 256, hmac_key);
	if (r < 0)
		goto out;

	/* encIdentity = CFB(marshalled TPM2B_DIGEST of the credential). */
	uint8_t ident[2 + TRUST_DIGEST_LEN];
	ident[0] = (uint8_t)(plain_len >> 8);
	ident[1] = (uint8_t)plain_len;
	memcpy(ident + 2, plain, plain_len);
	size_t ident_len = 2 + plain_len;
	TPM2B_ID_OBJECT id = {0};
	uint8_t *enc = id.credential + 2 + TRUST_DIGEST_LEN;
	static const uint8_t iv[16];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n1 = 0, n2 = 0;
	r = -ENOMEM;
	if (!c || EVP_EncryptInit_ex(c, EVP_aes_128_cfb128(), NULL, sym_key, iv) != 1 ||
	    EVP_EncryptUpdate(c, enc, &n1, ident, (int)ident_len) != 1 ||
	    EVP_EncryptFinal_ex(c, enc + n1, &n2) != 1 || (size_t)(n1 + n2) != ident_len) {
		EVP_CIPHER_CTX_free(c);
		goto out;
	}
	EVP_CIPHER_CTX_free(c);

	uint8_t mac_in[2 + TRUST_DIGEST_LEN + 2 + TRUST_DIGEST_LEN];
	memcpy(mac_in, enc, ident_len);
	memcpy(mac_in + ident_len, ak_name, name_len);
	unsigned int mac_len = TRUST_DIGEST_LEN;
	if (!HMAC(EVP_sha256(), hmac_key, sizeof(hmac_key), mac_in, ident_len + name_len,
	          id.credential + 2, &mac_len))
		goto out;
	id.credential[0] = 0;
	id.credential[1] = TRUST_DIGEST_LEN;
	id.size = (UINT16)(2 + TRUST_DIGEST_LEN + ident_len);

	struct trust_blob cred = {malloc(sizeof(id)), 0}, sec = {malloc(sizeof(secret)), 0};
	if (!cred.data || !sec.data ||
	    Tss2_MU_TPM2B_ID_OBJECT_Marshal(&id, cred.data, sizeof(id), &cred.len) != 0 ||
	    Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(&secret, sec.data, sizeof(secret), &sec.len) !=
	        0) {
		free(cred.data);
		free(sec.data);
		goto out;
	}
	*ret_credential = cred;
	*ret_secret = sec;
	r = 0;
out:
	OPENSSL_cleanse(seed, sizeof(seed));
	OPENSSL_cleanse(sym_key, sizeof(sym_key));
	OPENSSL_cleanse(hmac_key, sizeof(hmac_key));
	ERR_clear_error();
	return r;
}

int trust_make_credential(const struct trust_blob *ek_public,
                          const uint8_t ak_name[2 + TRUST_DIGEST_LEN], const uint8_t *plain,
                          size_t plain_len, struct trust_blob *ret_credential,
                          struct trust_blob *ret_secret, char **ret_error)
{
	trust_quiet_tss();
	char *e = NULL;
	int r = do_make_credential(ek_public, ak_name, plain, plain_len, ret_credential, ret_secret,
	                           &e);
	return trust_error_out(trust_fail_default(r, &e, "credential"), e, ret_error);
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
	if (!blob_ok(attest)) {
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
	if (!blob_ok(signature)) {
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
