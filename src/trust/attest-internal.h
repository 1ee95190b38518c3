/* Private to src/trust: what the attest*.c files share. struct attest is
 * one host's attestation state, both sides; the functions are those one
 * file of the module offers another (their contracts next to them). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "api/server.h"
#include "lib/clock.h"
#include "store/store.h"
#include "trust/tables.h"
#include "trust/attest.h"
#include "trust/trust.h"

/* How often the agent looks at its TPM and its admission, and the leader at
 * the hosts it has to re-attest. */
#define TICK_MS 500
/* A failed join is tried again after this long. */
#define RETRY_MS 2000
/* A member that knows no leader for this long while the others name one
 * is cut off from Raft: it attests again (attest.c). */
#define CUT_OFF_MS 3000
/* A challenge must be answered within this long (its nonce goes stale). */
#define SESSION_MS   10000
#define MAX_SESSIONS 64
/* A refusal with the same reason is committed again only after this long. */
#define REFUSAL_REPEAT_MS 60000
#define CALL_TIMEOUT_MS   5000
#define MAX_QUOTING       256
#define SEED_FILE         "trust-seeded"

/* A message from a call that failed, or what to say when even allocating
 * it failed. */
#define WHY(e) ((e) ? (e) : "out of memory")

/* A challenge the leader sent and waits to see answered. */
struct session {
	char id[2 * 16 + 1]; /* "" free */
	char host[STORE_NAME_MAX];
	char ek_fp[TRUST_FP_LEN], ak_fp[TRUST_FP_LEN];
	char tls_fp[TRUST_FP_LEN]; /* the key of the challenge's TLS connection */
	struct trust_blob ak_public;
	uint8_t plain[TRUST_DIGEST_LEN], nonce[TRUST_NONCE_LEN];
	uint64_t expires_ms;
	uint64_t conn; /* ctl_client_id() of the connection that asked: only it may answer */
};

struct attest {
	uv_loop_t *loop;
	struct attest_options o;
	char host[STORE_NAME_MAX];
	char state_dir[PATH_MAX];
	struct store *store;
	struct trust_tpm *tpm;
	uint8_t digests[2][TRUST_DIGEST_LEN]; /* binary, configuration */
	char measurement[TRUST_FP_LEN];
	struct trust_blob ek_cert, ek_public, ak_public;
	char ek_fp[TRUST_FP_LEN], ak_fp[TRUST_FP_LEN];
	uint32_t reset_count, restart_count;
	/* The TLS key this agent speaks with: "" without TLS. */
	char tls_fp[TRUST_FP_LEN];
	json_t *tls_spki; /* its SubjectPublicKeyInfo in hex; NULL without TLS */

	/* This host's join. */
	bool fresh;   /* measured anew (start, TPM reset): join even if admitted */
	bool joining; /* a join is under way */
	uint64_t next_try_ms;
	uint64_t cut_since_ms; /* since when the others name a leader this host does not hear; 0 */
	char last_error[STORE_REASON_MAX];
	uint64_t admitted_ms;

	/* The leader's side. */
	struct session sessions[MAX_SESSIONS];
	char quoting[MAX_QUOTING][STORE_NAME_MAX]; /* re-attestations under way */
	bool seeded;

	uv_timer_t timer;
	int refs; /* the owner's and one per call in flight */
	bool closing;
};

/* attest.c: drops a reference; the last one frees @a. */
void attest_unref(struct attest *a);

/* attest-check.c: the hex fields of the peer messages. */
json_t *attest_hex_json(const uint8_t *data, size_t len);
/* Field @name of @args as bytes, at most @max of them; -EINVAL with a
 * reason, -ENOMEM. */
int attest_arg_hex(json_t *args, const char *name, size_t max, struct trust_blob *ret,
                   char **ret_error);
/* Like attest_arg_hex(), for a field of exactly @len bytes into @out. */
int attest_arg_hex_fixed(json_t *args, const char *name, uint8_t *out, size_t len,
                         char **ret_error);
/* Whether @s is a lowercase hex SHA-256. */
bool attest_is_digest(const char *s);

/* attest-host.c: this host's side. */
int attest_open_tpm(struct attest *a, const char *binary, const char *config_text,
                    char **ret_error);
void attest_watch_tpm(struct attest *a);
bool attest_admitted(const struct attest *a, const struct store_state *st);
void attest_join(struct attest *a);
/* The answer to the leader's trust.quote. */
int attest_answer_quote(struct attest *a, const struct ctl_request *req, json_t **ret_result,
                        char **ret_error);

/* attest-leader.c: the leader's conclusions. */
int attest_commit(struct attest *a, const char *host, const char *what,
                  const struct store_cmd *first, const struct store_cmd *second,
                  struct ctl_deferred *reply);
/* How attest_refuse() takes a failed attempt. */
enum attest_refusal {
	REFUSE_ATTEMPT, /* not proven to be the host's: its admission stays */
	REFUSE_REVOKE,  /* the host's own: its admission goes */
	REFUSE_CHANGED, /* the host's own quote, of a new untrusted measurement */
};
void attest_refuse(struct attest *a, const char *host, const char *reason, const char *ek_fp,
                   const char *measurement, enum attest_refusal how);
bool attest_is_trusted(const struct store_state *st, const char *measurement);
int attest_check_stored_quote(struct attest *a, const char *host, const char *ek_fp, json_t *args,
                              const struct trust_blob *ak, const char *ak_fp, const uint8_t *nonce,
                              struct trust_quote *ret_q, char **ret_error);

/* attest-reattest.c: the leader's tick. */
void attest_lead(struct attest *a);
/* Quotes @host now, at the peer address the store has for it (unless a
 * quote of it is under way): a bad answer revokes its admission. */
void attest_reattest(struct attest *a, const char *host);

static inline struct store_cmd attestation_cmd(const char *host, enum trust_attest_state state,
                                               const char *reason, const char *ek_fp,
                                               const char *measurement)
{
	struct store_cmd cmd = {.table = TRUST_ATTESTATIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct trust_attestation *t = STORE_CMD_ROW(&cmd, struct trust_attestation);
	snprintf(t->host, sizeof(t->host), "%s", host);
	t->state = (uint8_t)state;
	snprintf(t->reason, sizeof(t->reason), "%s", reason ? reason : "");
	snprintf(t->ek_fp, sizeof(t->ek_fp), "%s", ek_fp ? ek_fp : "");
	if (attest_is_digest(measurement))
		snprintf(t->measurement, sizeof(t->measurement), "%s", measurement);
	t->time_ms = cmd.time_ms;
	return cmd;
}

/* Records @tls_fp (may be NULL) as the key of the attestation row @cmd. */
static inline void attestation_set_key(struct store_cmd *cmd, const char *tls_fp)
{
	struct trust_attestation *t = STORE_CMD_ROW(cmd, struct trust_attestation);
	snprintf(t->tls_fp, sizeof(t->tls_fp), "%s", tls_fp ? tls_fp : "");
}
