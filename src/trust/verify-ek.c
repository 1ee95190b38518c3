/* Verification of another host's endorsement key, with no TPM: its EK
 * certificate's chain to the TPM manufacturers' CAs (TCG critical
 * extensions allowed) and that the EK public area is the certificate's
 * key.
 *
 * Everything here reads bytes that came over the network. Each TPM
 * structure is unmarshalled with tss2-mu, which checks every length
 * against the buffer, and the whole input must be consumed: trailing bytes
 * are refused, so one structure has one encoding. Error codes: -EINVAL for
 * a caller's mistake, -EBADMSG for a malformed input, -EACCES for an input
 * that is well formed but fails a check, -ENOMEM/-EIO for OpenSSL. */
#include <dirent.h>
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

#include "lib/hex.h"
#include "trust/internal.h"

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
