/* Trust: the host's TPM 2.0 (tpm2-tss ESAPI) and the verification of what
 * another host's TPM says (OpenSSL). The only module that includes tss2
 * headers: everything that crosses this interface is plain bytes, in the
 * TPM's own marshalled forms (TPM 2.0 Part 2, "Structures"), so the rest of
 * the agent can carry them without knowing them.
 *
 * Every function returns 0 or a negative errno; those that take @ret_error
 * set it to a one-line reason on failure (newly allocated, lib/error.h;
 * untouched on success) (naming the field or the check
 * that failed). Output parameters are set only on success; a blob's data is
 * free()d by the caller. The verifier's codes: -EBADMSG for a malformed
 * input, -EACCES for a well-formed one that fails a check (wrong key,
 * chain, nonce, value), -EOPNOTSUPP for a key type it does not handle,
 * -EINVAL for a caller's mistake. trust_tpm_activate() gives -EACCES when
 * the TPM refuses the credential (not made for this EK and AK). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRUST_DIGEST_LEN 32 /* SHA-256 */
#define TRUST_FP_LEN     65 /* lowercase hex SHA-256 and its NUL */
#define TRUST_NONCE_LEN  32

struct trust_blob {
	uint8_t *data;
	size_t len;
};

void trust_blob_done(struct trust_blob *b);

/* ---- the host's own TPM ---- */

struct trust_tpm;

/* Opens the TPM behind @tcti (a tpm2-tss TCTI string: "swtpm:path=SOCK",
 * "device:/dev/tpmrm0"), starting it up if it is not yet (TPM2_Startup
 * CLEAR; TPM_RC_INITIALIZE is fine). One process owns one TPM. */
int trust_tpm_open(const char *tcti, struct trust_tpm **ret_tpm, char **ret_error);
void trust_tpm_close(struct trust_tpm *t);

/* Resets @pcr (it must be resettable at locality 0: 16 or 23) and extends
 * the SHA-256 bank with each of @n @digests in order. */
int trust_tpm_measure(struct trust_tpm *t, unsigned pcr, const uint8_t (*digests)[TRUST_DIGEST_LEN],
                      size_t n, char **ret_error);

/* The SHA-256 bank's value of @pcr. */
int trust_tpm_pcr_read(struct trust_tpm *t, unsigned pcr, uint8_t ret_value[TRUST_DIGEST_LEN],
                       char **ret_error);

/* The TPM's reset and restart counters (TPM2_ReadClock): a reset counter
 * that moved means the TPM was reset (its PCRs are new). */
int trust_tpm_counters(struct trust_tpm *t, uint32_t *ret_reset, uint32_t *ret_restart,
                       char **ret_error);

/* The endorsement key: its certificate (DER) from the TCG NV index (RSA
 * 0x01c00002, else ECC 0x01c0000a), and its public area (marshalled
 * TPM2B_PUBLIC) of the key recreated from the TCG default template that
 * matches the certificate. */
int trust_tpm_ek(struct trust_tpm *t, struct trust_blob *ret_cert, struct trust_blob *ret_public,
                 char **ret_error);

/* The attestation key: a restricted ECC P-256 ECDSA/SHA-256 signing key,
 * a primary in the endorsement hierarchy with noDA, created on first use
 * and kept loaded; its public area (marshalled TPM2B_PUBLIC). The same TPM
 * always gives the same key. */
int trust_tpm_ak(struct trust_tpm *t, struct trust_blob *ret_public, char **ret_error);

/* A quote of @pcr (SHA-256 bank) with @nonce as qualifying data, signed by
 * the AK: the marshalled TPM2B_ATTEST and TPMT_SIGNATURE. */
int trust_tpm_quote(struct trust_tpm *t, unsigned pcr, const uint8_t *nonce, size_t nonce_len,
                    struct trust_blob *ret_attest, struct trust_blob *ret_signature,
                    char **ret_error);

/* TPM2_ActivateCredential with the AK as the activated object and the EK
 * (under its policy, PolicySecret of the endorsement hierarchy) as the key:
 * the secret a verifier sealed with trust_make_credential(). @credential is
 * a marshalled TPM2B_ID_OBJECT, @secret a marshalled TPM2B_ENCRYPTED_SECRET. */
int trust_tpm_activate(struct trust_tpm *t, const struct trust_blob *credential,
                       const struct trust_blob *secret, struct trust_blob *ret_plain,
                       char **ret_error);

/* ---- verification of another TPM (no TPM needed) ---- */

/* Checks an EK certificate (DER) against the CA certificates in @ca_path (a
 * PEM file, or a directory of PEM files: the TPM manufacturers' roots and
 * intermediates), and that @ek_public's key is the certificate's key.
 * *ret_fp is the SHA-256 of the certificate. */
int trust_ek_check(const struct trust_blob *cert, const struct trust_blob *ek_public,
                   const char *ca_path, char ret_fp[TRUST_FP_LEN], char **ret_error);

/* Checks that @ak_public is a key a TPM made for attestation: ECC P-256,
 * ECDSA with SHA-256, restricted, sign, fixedTPM, fixedParent,
 * sensitiveDataOrigin, and not decrypt. *ret_fp is the SHA-256 of the
 * marshalled TPMT_PUBLIC; *ret_name its TPM name (nameAlg and digest,
 * 34 bytes). */
int trust_ak_check(const struct trust_blob *ak_public, char ret_fp[TRUST_FP_LEN],
                   uint8_t ret_name[2 + TRUST_DIGEST_LEN], char **ret_error);

/* TPM2_MakeCredential in software (TPM 2.0 Part 1, "Credential
 * Protection"): seals @plain (at most 32 bytes) to the TPM that holds both
 * @ek_public and the key named @ak_name. */
int trust_make_credential(const struct trust_blob *ek_public,
                          const uint8_t ak_name[2 + TRUST_DIGEST_LEN], const uint8_t *plain,
                          size_t plain_len, struct trust_blob *ret_credential,
                          struct trust_blob *ret_secret, char **ret_error);

/* What a good quote said. */
struct trust_quote {
	uint8_t pcr_value[TRUST_DIGEST_LEN]; /* the one quoted PCR: the caller's @expected */
	uint32_t reset_count, restart_count;
	uint64_t clock_ms;
	bool safe;
};

/* Checks a quote: the signature by @ak_public over @attest, TPM-generated
 * (magic), a quote (type), @nonce as its qualifying data, exactly @pcr of
 * the SHA-256 bank selected, and its PCR digest equal to that of
 * @expected, the value the verifier expects @pcr to hold. */
int trust_quote_check(const struct trust_blob *ak_public, const struct trust_blob *attest,
                      const struct trust_blob *signature, const uint8_t *nonce, size_t nonce_len,
                      unsigned pcr, const uint8_t expected[TRUST_DIGEST_LEN],
                      struct trust_quote *ret_quote, char **ret_error);

/* ---- measurements (pure) ---- */

/* SHA-256 of @len bytes, and of a file's content. */
void trust_sha256(const void *data, size_t len, uint8_t ret[TRUST_DIGEST_LEN]);
int trust_file_sha256(const char *path, uint8_t ret[TRUST_DIGEST_LEN]);

/* The value a resettable PCR holds after a reset (zeros) and one extend by
 * each of @n @digests in order: what trust_tpm_measure() leaves. */
void trust_pcr_replay(const uint8_t (*digests)[TRUST_DIGEST_LEN], size_t n,
                      uint8_t ret[TRUST_DIGEST_LEN]);

/* The two digests the agent extends its PCR with: its binary's (the file
 * @binary) and its measured configuration's (@config_text, as
 * config_measured() of src/ettmd/config.h gives it). Fails (-errno, with
 * *ret_error naming the file) when the binary cannot be read. */
int trust_agent_digests(const char *binary, const char *config_text,
                        uint8_t ret[2][TRUST_DIGEST_LEN], char **ret_error);

/* The measurement of an agent: the value its PCR holds after the agent's
 * start (trust_pcr_replay() of trust_agent_digests()), as lowercase hex;
 * what `ettmctl trust add` must be given for the cluster to admit it.
 * Needs no TPM. Errors as trust_agent_digests(). */
int trust_measurement(const char *binary, const char *config_text, char ret_hex[TRUST_FP_LEN],
                      char **ret_error);
