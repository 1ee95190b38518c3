/* The trust module's tables in the store: which hosts are admitted, which
 * measurements are trusted, and what the leader last concluded of each
 * host's attestation (docs/trust.md). Registered with
 * store_tables_register(trust_tables). */
#pragma once

#include <stdint.h>

#include "store/tables.h"

/* Table ids: on the wire, never renumbered. */
#define TRUST_ADMISSIONS   3
#define TRUST_TRUSTED      4
#define TRUST_ATTESTATIONS 12 /* since encoding 3 */

struct trust_admission {
	char host[STORE_NAME_MAX]; /* key */
	char ek_fp[STORE_DIGEST_MAX];
	char ak_fp[STORE_DIGEST_MAX];
	char measurement[STORE_DIGEST_MAX];
	char mac[STORE_MAC_MAX];
	uint64_t dpid;
	uint32_t port;
	uint64_t time_ms;
	/* The fingerprint (SHA-256 of the SubjectPublicKeyInfo, hex) of the
	 * TLS key the host attested with: the key the agents accept from it
	 * (docs/trust.md). "" in admissions made before encoding 5 and in
	 * the admin's without attestation. */
	char tls_fp[STORE_DIGEST_MAX];
};

struct trust_trusted {
	char digest[STORE_DIGEST_MAX]; /* key; lowercase hex SHA-256 */
	char note[STORE_NOTE_MAX];
	uint64_t added_ms;
};

/* What the leader last concluded of a host's attestation (docs/trust.md).
 * An admission is what opens the port; this row says why there is one, or
 * why not. */
enum trust_attest_state {
	TRUST_ATTEST_ADMITTED = 1, /* the last quote was good */
	TRUST_ATTEST_REFUSED = 2,  /* the last attempt failed: @reason */
	TRUST_ATTEST_REVOKED = 3,  /* the admin revoked the host: no attempt is heard */
	/* Its own quote (re-attestation) showed a measurement other than its
	 * admission's, and not a trusted one: refused, and its key speaks no
	 * Raft until it attests again (gate.h), unless most voters are so. */
	TRUST_ATTEST_CHANGED = 4,
};

struct trust_attestation {
	char host[STORE_NAME_MAX]; /* key */
	uint8_t state;             /* enum trust_attest_state */
	char reason[STORE_REASON_MAX];
	char ek_fp[STORE_DIGEST_MAX];        /* its TPM: a host name stays with one TPM */
	char measurement[STORE_DIGEST_MAX];  /* the PCR value the host claimed */
	uint32_t reset_count, restart_count; /* its TPM's, from the last good quote */
	uint64_t time_ms;                    /* of the last attempt */
	/* The TLS key of its last admission (since encoding 5; "" before):
	 * kept through a refusal or a revocation, so that the key stays
	 * known as this host's (gate.h). */
	char tls_fp[STORE_DIGEST_MAX];
};

/* NULL-terminated, for store_tables_register(). */
extern const struct store_table *const trust_tables[];

const struct trust_admission *trust_admission_find(const struct store_state *s, const char *host);
/* The admission whose TLS key has fingerprint @tls_fp, or NULL. */
const struct trust_admission *trust_admission_by_key(const struct store_state *s,
                                                     const char *tls_fp);
const struct trust_attestation *trust_attestation_find(const struct store_state *s,
                                                       const char *host);
/* "admitted", "refused", "revoked", "changed" (enum trust_attest_state), or
 * "none". */
const char *trust_attest_state_name(unsigned state);
