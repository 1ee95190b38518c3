/* Fuzz target: what a joining host sends the leader. The input is four
 * length-prefixed fields (16-bit big-endian length, then the bytes): AK
 * public, attest, signature, EK public; then the 32-byte nonce and the
 * 32-byte expected PCR value (zeros if short); the rest is the EK
 * certificate (DER). Every check either accepts or refuses with an error
 * message; never a crash or an over-read. The CA is a self-signed
 * certificate made at start-up. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "trust/trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The CA lives in a memfd, reached by its /proc/self/fd path: nothing is
 * left on disk however the fuzzer exits. */
static const char *ca_path(void)
{
	static char path[64];
	static bool made, failed;
	if (made || failed)
		return made ? path : "/nonexistent";
	failed = true;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	FILE *f = NULL;
	int fd = memfd_create("fuzz-trust-ca", 0);
	if (!key || !x || !name || fd < 0)
		goto out;
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"fuzz CA", -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	if (!X509_sign(x, key, EVP_sha256()))
		goto out;
	f = fdopen(dup(fd), "w");
	if (f && PEM_write_X509(f, x) == 1 && fflush(f) == 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		made = true;
	}
out:
	if (f)
		fclose(f);
	if (!made && fd >= 0)
		close(fd);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	failed = !made;
	return made ? path : "/nonexistent";
}

static struct trust_blob field(const uint8_t **p, size_t *left)
{
	struct trust_blob b = {NULL, 0};
	if (*left < 2) {
		*left = 0;
		return b;
	}
	size_t len = (size_t)(*p)[0] << 8 | (*p)[1];
	*p += 2, *left -= 2;
	if (len > *left)
		len = *left;
	/* A copy of exactly the field, so that the sanitizers catch a read
	 * past its end. */
	b.data = malloc(len ? len : 1);
	memcpy(b.data, *p, len);
	b.len = len;
	*p += len, *left -= len;
	return b;
}

static void fixed(const uint8_t **p, size_t *left, uint8_t *out, size_t n)
{
	size_t take = *left < n ? *left : n;
	memset(out, 0, n);
	memcpy(out, *p, take);
	*p += take, *left -= take;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t left = size;
	struct trust_blob ak = field(&p, &left), attest = field(&p, &left);
	struct trust_blob sig = field(&p, &left), ek = field(&p, &left);
	uint8_t nonce[TRUST_NONCE_LEN], expected[TRUST_DIGEST_LEN];
	fixed(&p, &left, nonce, sizeof(nonce));
	fixed(&p, &left, expected, sizeof(expected));
	struct trust_blob cert = {malloc(left ? left : 1), left};
	memcpy(cert.data, p, left);

	char *err = NULL, fp[TRUST_FP_LEN];
	uint8_t name[2 + TRUST_DIGEST_LEN] = {0};
	struct trust_quote q;
	if (trust_ak_check(&ak, fp, name, &err) < 0 && !err)
		__builtin_trap();
	free(err);
	err = NULL;
	if (trust_quote_check(&ak, &attest, &sig, nonce, sizeof(nonce), 16, expected, &q, &err) <
	        0 &&
	    !err)
		__builtin_trap();
	free(err);
	err = NULL;
	if (trust_ek_check(&cert, &ek, ca_path(), fp, &err) < 0 && !err)
		__builtin_trap();
	struct trust_blob cred, secret;
	free(err);
	err = NULL;
	int r = trust_make_credential(&ek, name, nonce, sizeof(nonce), &cred, &secret, &err);
	if (r < 0 && !err)
		__builtin_trap();
	free(err);
	if (r == 0) {
		trust_blob_done(&cred);
		trust_blob_done(&secret);
	}
	trust_blob_done(&ak);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
	trust_blob_done(&ek);
	trust_blob_done(&cert);
	return 0;
}
