/* The software half of credential activation, with no TPM:
 * TPM2_MakeCredential (TPM 2.0 Part 1, "Credential Protection"), sealing a
 * secret to the TPM that holds a given EK and a key of a given name, for an
 * RSA EK (OAEP) or an ECC EK (ECDH, KDFe).
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
