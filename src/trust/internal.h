/* Shared between the files of src/trust only: the TPM side (tpm.c) and the
 * verifier (verify.c) read the same TPM structures the same way. */
#pragma once

#include <stdarg.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "trust/trust.h"

/* printf into @error (if any). */
void trust_err(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps tpm2-tss from logging to stderr unless TSS2_LOG asks for it. */
void trust_quiet_tss(void);

/* @r; if it is an error and nothing was written to @error yet, says
 * "@what: strerror" there. */
int trust_fail_default(int r, char *error, size_t error_size, const char *what);

/* Unmarshals a whole TPM2B_PUBLIC (no bytes left over); @what names the
 * input in the error. -EBADMSG if malformed. */
int trust_public_unmarshal(const struct trust_blob *b, const char *what, TPM2B_PUBLIC *ret_public,
                           char *error, size_t error_size);

/* Marshals @pub into a new blob. */
int trust_public_marshal(const TPM2B_PUBLIC *pub, struct trust_blob *ret_blob);

/* The OpenSSL key of an RSA or ECC (NIST P-256/P-384) public area. */
int trust_public_pkey(const TPMT_PUBLIC *pub, EVP_PKEY **ret_pkey, char *error, size_t error_size);

/* The EK certificate's key equals the public area's: 0, or -EACCES. */
int trust_cert_matches_public(const uint8_t *der, size_t der_len, const TPMT_PUBLIC *pub,
                              char *error, size_t error_size);
