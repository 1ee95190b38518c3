/* Attestation: how a host proves to the cluster that its TPM is genuine and
 * that it runs a trusted agent, and how the leader keeps checking it
 * (docs/trust.md, "Join protocol"). Every agent with [trust] configured
 * measures itself into its TPM and joins; the store's leader verifies joins
 * and re-attests admitted hosts. An admission committed here is what opens
 * the host's switch port (src/switch). */
#pragma once

#include <limits.h>
#include <stdbool.h>

#include <jansson.h>
#include <uv.h>

#include "api/server.h"
#include "store/store.h"
#include "trust.h"

#define ATTEST_TCTI_MAX 256

struct attest_options {
	char tcti[ATTEST_TCTI_MAX]; /* the TPM; "" leaves admission to the admin */
	char ca[PATH_MAX];          /* PEM file or directory: EK certificates' CAs */
	unsigned pcr;               /* resettable PCR for the measurement: 16 */
	unsigned reattest_ms;       /* the leader quotes each admitted host this often */
};

void attest_options_default(struct attest_options *o);

static inline bool attest_enabled(const struct attest_options *o)
{
	return o->tcti[0] != '\0';
}

struct attest;

/* Opens the TPM, measures @binary and @config_text (as trust_measurement())
 * into the PCR, reads the EK
 * certificate and creates the AK; then joins the cluster of @store as host
 * @host and, while this host leads, verifies other hosts. @state_dir keeps
 * whether this host has seeded the trusted measurements of a new cluster.
 * Returns 0 or a negative errno with *ret_error (lib/error.h). */
int attest_open(uv_loop_t *loop, const struct attest_options *o, const char *host,
                const char *binary, const char *config_text, const char *state_dir,
                struct store *store, struct attest **ret_attest, char **ret_error);

/* Stops the timers; in-flight calls finish without effect. NULL is fine. */
void attest_close(struct attest *a);

/* The peer API's trust.challenge, trust.prove and trust.quote. Returns
 * -ENOENT with no error for other commands. */
int attest_handle_peer(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error);

/* The admin's hosts.admit and hosts.revoke when admission is by attestation:
 * revoke closes the host's port and refuses its attempts until admit lets
 * it attest again (with any TPM). -ENOENT for other commands. */
int attest_handle_admin(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error);

/* ---- the checks of the join messages, without a store (and fuzzed) ---- */

/* What a trust.challenge says of the host's TPM, checked. */
struct attest_claim {
	struct trust_blob ek_public, ak_public;
	char ek_fp[TRUST_FP_LEN], ak_fp[TRUST_FP_LEN];
	uint8_t ak_name[2 + TRUST_DIGEST_LEN];
};

void attest_claim_done(struct attest_claim *c);

/* Decodes a trust.challenge's @args (ek_cert, ek_public, ak_public in hex)
 * and checks the EK certificate against the CAs of @ca and the AK's
 * attributes. -EINVAL for a malformed message, -EPERM for a failed check,
 * with the reason in *ret_error (newly allocated). */
int attest_check_challenge(json_t *args, const char *ca, struct attest_claim *ret_claim,
                           char **ret_error);

/* Decodes the quote of a trust.prove or a trust.quote answer (@args:
 * measurement, attest, signature, and ak_public when @ak is NULL, whose
 * fingerprint then goes to @ret_ak_fp) and checks it: signed by the AK,
 * over @nonce, of @pcr holding the claimed measurement. Errors as
 * attest_check_challenge(). */
int attest_check_quote(json_t *args, const struct trust_blob *ak,
                       const uint8_t nonce[TRUST_NONCE_LEN], unsigned pcr,
                       char ret_ak_fp[TRUST_FP_LEN], struct trust_quote *ret_quote,
                       char **ret_error);

/* The qualifying data of every quote (TPM2_Quote's qualifyingData, Part 3,
 * 18.4): SHA-256(@nonce || the 32 bytes of @tls_fp), so that the quote
 * binds the TLS key the host speaks with (docs/trust.md). An empty
 * @tls_fp (an agent without TLS) counts as 32 zero bytes. */
void attest_bind_nonce(const uint8_t nonce[TRUST_NONCE_LEN], const char *tls_fp,
                       uint8_t ret[TRUST_NONCE_LEN]);

/* The fingerprint of the TLS key in field "tls_spki" of @args (a DER
 * SubjectPublicKeyInfo in hex) into @ret_fp; -EINVAL with a reason. */
int attest_arg_tls_key(json_t *args, char ret_fp[TRUST_FP_LEN], char **ret_error);

/* This host's measurement (lowercase hex): what `ettmctl trust add` must
 * be given for the cluster to admit it. */
const char *attest_measurement(const struct attest *a);

/* This host's side, for `ettmctl status`: measurement, PCR, whether it is
 * admitted, the last error of a join. */
json_t *attest_status(const struct attest *a);

struct service;
/* Admission (attestation, or the admin's) as a service of the agent
 * (service.c). */
extern const struct service trust_service;
