/* Shared between the files of src/trust only: the TPM side (tpm.c) and the
 * verifier (verify.c) read the same TPM structures the same way. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "trust/trust.h"

/* Inside src/trust an error travels in a slot that the module's entry point
 * starts at NULL (char *e = NULL; ... &e): a function that fails writes its
 * reason there with trust_err(), which replaces what the slot held (the
 * innermost, most precise reason is written last or kept by
 * trust_fail_default()). The entry point then hands the slot to its caller
 * with trust_error_out(), so that outside the module *ret_error is set only
 * on failure (lib/error.h). */

/* printf into *@ret_error (if @ret_error), freeing what it held. */
void trust_err(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands @error (may be NULL) to *@ret_error when @r is a failure, frees it
 * otherwise; returns @r. */
int trust_error_out(int r, char *error, char **ret_error);

/* Whether @b holds at least one byte. */
bool trust_blob_ok(const struct trust_blob *b);

/* Keeps tpm2-tss from logging to stderr unless TSS2_LOG asks for it. */
void trust_quiet_tss(void);

/* @r; if it is an error and nothing was written to *@ret_error yet, says
 * "@what: strerror" there. */
int trust_fail_default(int r, char **ret_error, const char *what);

/* Unmarshals a whole TPM2B_PUBLIC (no bytes left over); @what names the
 * input in the error. -EBADMSG if malformed. */
int trust_public_unmarshal(const struct trust_blob *b, const char *what, TPM2B_PUBLIC *ret_public,
                           char **ret_error);

/* Marshals @pub into a new blob. */
int trust_public_marshal(const TPM2B_PUBLIC *pub, struct trust_blob *ret_blob);

/* The OpenSSL key of an RSA or ECC (NIST P-256/P-384) public area. */
int trust_public_pkey(const TPMT_PUBLIC *pub, EVP_PKEY **ret_pkey, char **ret_error);

/* The EK certificate's key equals the public area's: 0, or -EACCES. */
int trust_cert_matches_public(const uint8_t *der, size_t der_len, const TPMT_PUBLIC *pub,
                              char **ret_error);
