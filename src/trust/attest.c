#include "attest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "api/client.h"
#include "lib/clock.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "trust.h"
#include "trust/tables.h"
#include "switch/tables.h"

/* How often the agent looks at its TPM and its admission, and the leader at
 * the hosts it has to re-attest. */
#define TICK_MS 500
/* A failed join is tried again after this long. */
#define RETRY_MS 2000
/* A challenge must be answered within this long (its nonce goes stale). */
#define SESSION_MS   10000
#define MAX_SESSIONS 64
/* A refusal with the same reason is committed again only after this long. */
#define REFUSAL_REPEAT_MS 60000
#define CALL_TIMEOUT_MS   5000
#define MAX_QUOTING       256
#define SEED_FILE         "trust-seeded"

void attest_options_default(struct attest_options *o)
{
	*o = (struct attest_options){.pcr = 16, .reattest_ms = 30000};
}

/* A challenge the leader sent and waits to see answered. */
struct session {
	char id[2 * 16 + 1]; /* "" free */
	char host[STORE_NAME_MAX];
	char ek_fp[TRUST_FP_LEN], ak_fp[TRUST_FP_LEN];
	struct trust_blob ak_public;
	uint8_t plain[TRUST_DIGEST_LEN], nonce[TRUST_NONCE_LEN];
	uint64_t expires_ms;
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

	/* This host's join. */
	bool fresh;   /* measured anew (start, TPM reset): join even if admitted */
	bool joining; /* a join is under way */
	uint64_t next_try_ms;
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

static void unref(struct attest *a)
{
	if (--a->refs > 0)
		return;
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		trust_blob_done(&a->sessions[i].ak_public);
	trust_blob_done(&a->ek_cert);
	trust_blob_done(&a->ek_public);
	trust_blob_done(&a->ak_public);
	trust_tpm_close(a->tpm);
	free(a);
}

/* ---- hex fields of the peer messages ---- */

static json_t *hex_json(const uint8_t *data, size_t len)
{
	char *s = malloc(2 * len + 1);
	if (!s)
		return NULL;
	trust_hex(data, len, s);
	json_t *j = json_string(s);
	free(s);
	return j;
}

static int unhex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Field @name of @args as bytes, at most @max of them. */
static int arg_hex(json_t *args, const char *name, size_t max, struct trust_blob *ret,
                   char **ret_error)
{
	const char *s = json_string_value(json_object_get(args, name));
	size_t n = s ? strlen(s) : 0;
	if (!s || n == 0 || n % 2 || n / 2 > max)
		goto bad;
	uint8_t *data = malloc(n / 2);
	if (!data)
		return -ENOMEM;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = unhex_digit(s[2 * i]), lo = unhex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(data);
			goto bad;
		}
		data[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret = (struct trust_blob){data, n / 2};
	return 0;
bad:
	if (asprintf(ret_error, "field \"%s\": expected 1 to %zu bytes in hex", name, max) < 0)
		*ret_error = NULL;
	return -EINVAL;
}

/* Like arg_hex(), for a field of exactly @len bytes into @out. */
static int arg_hex_fixed(json_t *args, const char *name, uint8_t *out, size_t len, char **ret_error)
{
	struct trust_blob b = {0};
	int r = arg_hex(args, name, len, &b, ret_error);
	if (r == 0 && b.len != len) {
		if (asprintf(ret_error, "field \"%s\": expected %zu bytes in hex", name, len) < 0)
			*ret_error = NULL;
		r = -EINVAL;
	}
	if (r == 0)
		memcpy(out, b.data, len);
	trust_blob_done(&b);
	return r;
}

static bool is_digest_hex(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static void digest_from_hex(const char *hex, uint8_t out[TRUST_DIGEST_LEN])
{
	for (size_t i = 0; i < TRUST_DIGEST_LEN; i++)
		out[i] = (uint8_t)(unhex_digit(hex[2 * i]) << 4 | unhex_digit(hex[2 * i + 1]));
}

/* ---- measuring ---- */

/* The two digests the agent extends its PCR with: its binary's and its
 * measured configuration's. */
static int digests_of(const char *binary, const char *config_text, uint8_t ret[2][TRUST_DIGEST_LEN],
                      char *error, size_t error_size)
{
	int r = trust_file_sha256(binary, ret[0]);
	if (r < 0) {
		snprintf(error, error_size, "cannot read the agent's binary %s: %s", binary,
		         strerror(-r));
		return r;
	}
	trust_sha256(config_text, strlen(config_text), ret[1]);
	return 0;
}

int attest_measure(const char *binary, const char *config_text, char ret_hex[TRUST_FP_LEN],
                   char *error, size_t error_size)
{
	uint8_t d[2][TRUST_DIGEST_LEN], pcr[TRUST_DIGEST_LEN];
	int r = digests_of(binary, config_text, d, error, error_size);
	if (r < 0)
		return r;
	trust_pcr_replay((const uint8_t(*)[TRUST_DIGEST_LEN])d, 2, pcr);
	trust_hex(pcr, sizeof(pcr), ret_hex);
	return 0;
}

/* Resets the PCR and extends it with the binary's and the configuration's
 * digests; checks that the TPM then holds what the verifier will expect. */
static int measure(struct attest *a, char *error, size_t error_size)
{
	int r = trust_tpm_measure(a->tpm, a->o.pcr, (const uint8_t(*)[TRUST_DIGEST_LEN])a->digests,
	                          2, error, error_size);
	if (r < 0)
		return r;
	uint8_t value[TRUST_DIGEST_LEN], expected[TRUST_DIGEST_LEN];
	r = trust_tpm_pcr_read(a->tpm, a->o.pcr, value, error, error_size);
	if (r < 0)
		return r;
	trust_pcr_replay((const uint8_t(*)[TRUST_DIGEST_LEN])a->digests, 2, expected);
	if (memcmp(value, expected, sizeof(value)) != 0) {
		snprintf(error, error_size,
		         "PCR %u does not hold the measurement after extending it (another "
		         "program extends it too?)",
		         a->o.pcr);
		return -EIO;
	}
	trust_hex(value, sizeof(value), a->measurement);
	a->fresh = true;
	return trust_tpm_counters(a->tpm, &a->reset_count, &a->restart_count, error, error_size);
}

/* ---- committing the leader's conclusions ---- */

struct commit {
	struct attest *a;
	struct ctl_deferred *reply; /* answered when the last command is applied */
	struct store_cmd next;      /* proposed after the first; table 0: none */
	char host[STORE_NAME_MAX];
	char what[64];
};

static void commit_done(void *userdata, int status, const struct store_result *result,
                        const char *error)
{
	struct commit *c = userdata;
	bool ok = status == 0 && result->applied;
	/* Deleting an admission that is not there is fine. */
	if (status == 0 && !result->applied && strncmp(result->reason, "no such", 7) == 0)
		ok = true;
	if (!ok)
		log_warn("trust: %s of %s not committed: %s", c->what, c->host,
		         status < 0 ? error : result->reason);
	if (ok && c->next.table) {
		struct store_cmd next = c->next;
		c->next.table = 0;
		if (store_propose(c->a->store, &next, commit_done, c) == 0)
			return;
		ok = false;
	}
	if (c->reply)
		ctl_deferred_reply(c->reply,
		                   ok ? json_pack("{s:s, s:s}", "host", c->host, "result", c->what)
		                      : NULL,
		                   ok ? NULL : "the store did not take the decision; try again");
	unref(c->a);
	free(c);
}

/* Proposes @first, then @second (if not NULL) once @first is applied;
 * replies to @reply (may be NULL) after the last. */
static int commit(struct attest *a, const char *host, const char *what,
                  const struct store_cmd *first, const struct store_cmd *second,
                  struct ctl_deferred *reply)
{
	struct commit *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->a = a;
	c->reply = reply;
	if (second)
		c->next = *second;
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->what, sizeof(c->what), "%s", what);
	a->refs++;
	int r = store_propose(a->store, first, commit_done, c);
	if (r < 0) {
		a->refs--;
		free(c);
	}
	return r;
}

static struct store_cmd attestation_cmd(const char *host, enum trust_attest_state state,
                                        const char *reason, const char *ek_fp,
                                        const char *measurement)
{
	struct store_cmd cmd = {.table = TRUST_ATTESTATIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct trust_attestation *t = STORE_CMD_ROW(&cmd, struct trust_attestation);
	snprintf(t->host, sizeof(t->host), "%s", host);
	t->state = (uint8_t)state;
	snprintf(t->reason, sizeof(t->reason), "%s", reason ? reason : "");
	snprintf(t->ek_fp, sizeof(t->ek_fp), "%s", ek_fp ? ek_fp : "");
	if (is_digest_hex(measurement))
		snprintf(t->measurement, sizeof(t->measurement), "%s", measurement);
	t->time_ms = cmd.time_ms;
	return cmd;
}

static struct store_cmd admission_delete(const char *host)
{
	struct store_cmd cmd = {
	    .table = TRUST_ADMISSIONS, .op = STORE_DELETE, .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_admission)->host), "%s", host);
	return cmd;
}

/* Records that @host failed to attest, and why; with @revoke its admission
 * goes too (its port closes). The same refusal is not committed again
 * within REFUSAL_REPEAT_MS, so a host retrying does not fill the log. */
static void refuse(struct attest *a, const char *host, const char *reason, const char *ek_fp,
                   const char *measurement, bool revoke)
{
	const struct store_state *st = store_state(a->store);
	const struct trust_attestation *old = trust_attestation_find(st, host);
	bool admitted = trust_admission_find(st, host) != NULL;
	if (!revoke && admitted) {
		log_debug("trust: a challenge for %s refused: %s", host, reason);
		return; /* not proven to come from the host: leave its admission */
	}
	if (old && old->state == TRUST_ATTEST_REFUSED && strcmp(old->reason, reason) == 0 &&
	    wall_ms() - old->time_ms < REFUSAL_REPEAT_MS && !admitted)
		return;
	log_warn("trust: %s refused%s: %s", host, admitted ? " and revoked" : "", reason);
	/* A host name stays bound to the TPM it attested with. */
	if (old && old->ek_fp[0])
		ek_fp = old->ek_fp;
	struct store_cmd t =
	    attestation_cmd(host, TRUST_ATTEST_REFUSED, reason, ek_fp, measurement);
	struct store_cmd del = admission_delete(host);
	if (commit(a, host, "refusal", &t, admitted ? &del : NULL, NULL) < 0)
		log_warn("trust: cannot commit the refusal of %s", host);
}

static bool is_trusted(const struct store_state *st, const char *measurement)
{
	for (size_t i = 0; i < store_count(st, TRUST_TRUSTED); i++) {
		const struct trust_trusted *t = store_row(st, TRUST_TRUSTED, i);
		if (strcmp(t->digest, measurement) == 0)
			return true;
	}
	return false;
}

/* The checks a quote's counters must pass against the last good quote of
 * the same TPM: they never go back (TPM 2.0 Part 1, "Clock and Time":
 * resetCount counts TPM Resets, restartCount the restarts since). */
static int check_counters(const struct trust_attestation *old, const char *ek_fp,
                          const struct trust_quote *q, char *error, size_t error_size)
{
	if (!old || old->state != TRUST_ATTEST_ADMITTED || strcmp(old->ek_fp, ek_fp) != 0)
		return 0;
	if (q->reset_count < old->reset_count ||
	    (q->reset_count == old->reset_count && q->restart_count < old->restart_count)) {
		snprintf(error, error_size,
		         "TPM counters went back (reset %u, restart %u after %u, %u): a replayed "
		         "quote or a rolled-back TPM",
		         q->reset_count, q->restart_count, old->reset_count, old->restart_count);
		return -EPERM;
	}
	return 0;
}

/* ---- the leader: trust.challenge and trust.prove ---- */

static struct session *session_find(struct attest *a, const char *id)
{
	for (size_t i = 0; id && i < MAX_SESSIONS; i++)
		if (a->sessions[i].id[0] && strcmp(a->sessions[i].id, id) == 0)
			return &a->sessions[i];
	return NULL;
}

static void session_end(struct session *s)
{
	trust_blob_done(&s->ak_public);
	*s = (struct session){0};
}

static struct session *session_new(struct attest *a)
{
	uint64_t now = mono_ms();
	struct session *oldest = &a->sessions[0];
	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = &a->sessions[i];
		if (s->id[0] && s->expires_ms <= now)
			session_end(s);
		if (!s->id[0])
			return s;
		if (s->expires_ms < oldest->expires_ms)
			oldest = s;
	}
	session_end(oldest);
	return oldest;
}

static int not_leader(struct attest *a, char **ret_error)
{
	const struct store_member *l =
	    store_member_find(store_state(a->store), store_leader_id(a->store));
	return error_set(ret_error, -EAGAIN, "%s is not the leader%s%s", a->host, l ? "; ask " : "",
	                 l ? l->name : "");
}

/* The member a join names, and whether the admin let it attest. */
static int check_host(struct attest *a, const char *host, char **ret_error)
{
	const struct store_state *st = store_state(a->store);
	if (!host || !store_member_find_name(st, host))
		return error_set(ret_error, -ENOENT, "field \"host\": no member named \"%s\"",
		                 host ? host : "");
	const struct trust_attestation *t = trust_attestation_find(st, host);
	if (t && t->state == TRUST_ATTEST_REVOKED)
		return error_set(
		    ret_error, -EPERM,
		    "%s was revoked by the admin; 'ettmctl hosts admit %s' lets it attest "
		    "again",
		    host, host);
	return 0;
}

void attest_claim_done(struct attest_claim *c)
{
	trust_blob_done(&c->ek_public);
	trust_blob_done(&c->ak_public);
}

int attest_check_challenge(json_t *args, const char *ca, struct attest_claim *ret_claim,
                           char **ret_error)
{
	struct attest_claim c = {0};
	struct trust_blob cert = {0};
	char why[150];
	int r;
	if ((r = arg_hex(args, "ek_cert", 8192, &cert, ret_error)) < 0 ||
	    (r = arg_hex(args, "ek_public", 1024, &c.ek_public, ret_error)) < 0 ||
	    (r = arg_hex(args, "ak_public", 1024, &c.ak_public, ret_error)) < 0)
		goto out;
	if (trust_ek_check(&cert, &c.ek_public, ca, c.ek_fp, why, sizeof(why)) < 0) {
		r = error_set(ret_error, -EPERM, "EK certificate: %s", why);
		goto out;
	}
	if (trust_ak_check(&c.ak_public, c.ak_fp, c.ak_name, why, sizeof(why)) < 0) {
		r = error_set(ret_error, -EPERM, "AK: %s", why);
		goto out;
	}
	*ret_claim = c;
	c = (struct attest_claim){0};
out:
	trust_blob_done(&cert);
	attest_claim_done(&c);
	return r;
}

static int handle_challenge(struct attest *a, const struct ctl_request *req, json_t **ret_result,
                            char **ret_error)
{
	const char *host = ctl_arg_str(req, "host");
	int r = check_host(a, host, ret_error);
	if (r < 0)
		return r;
	struct attest_claim c;
	r = attest_check_challenge(req->args, a->o.ca, &c, ret_error);
	if (r == -EPERM)
		refuse(a, host, *ret_error ? *ret_error : "bad EK or AK", NULL, NULL, false);
	if (r < 0)
		return r;
	struct trust_blob cred = {0}, secret = {0};
	char why[STORE_REASON_MAX];
	const struct trust_attestation *t = trust_attestation_find(store_state(a->store), host);
	if (t && t->ek_fp[0] && strcmp(t->ek_fp, c.ek_fp) != 0) {
		r = error_set(
		    ret_error, -EPERM,
		    "%s attested before with another TPM (EK %.16s...); 'ettmctl hosts revoke "
		    "%s' then 'hosts admit %s' let a new TPM in",
		    host, t->ek_fp, host, host);
		log_warn("trust: %s: %s", host, *ret_error ? *ret_error : "another TPM");
		goto out;
	}
	struct session *s = session_new(a);
	uint8_t id[16];
	if (getrandom(id, sizeof(id), 0) != sizeof(id) ||
	    getrandom(s->plain, sizeof(s->plain), 0) != sizeof(s->plain) ||
	    getrandom(s->nonce, sizeof(s->nonce), 0) != sizeof(s->nonce)) {
		r = error_set(ret_error, -EIO, "no random numbers");
		goto out;
	}
	if ((r = trust_make_credential(&c.ek_public, c.ak_name, s->plain, sizeof(s->plain), &cred,
	                               &secret, why, sizeof(why))) < 0) {
		r = error_set(ret_error, r, "cannot make a credential for that EK: %s", why);
		goto out;
	}
	trust_hex(id, sizeof(id), s->id);
	snprintf(s->host, sizeof(s->host), "%s", host);
	memcpy(s->ek_fp, c.ek_fp, sizeof(s->ek_fp));
	memcpy(s->ak_fp, c.ak_fp, sizeof(s->ak_fp));
	s->ak_public = c.ak_public;
	c.ak_public = (struct trust_blob){0};
	s->expires_ms = mono_ms() + SESSION_MS;
	*ret_result =
	    json_pack("{s:s, s:o, s:o, s:o}", "session", s->id, "credential",
	              hex_json(cred.data, cred.len), "secret", hex_json(secret.data, secret.len),
	              "nonce", hex_json(s->nonce, sizeof(s->nonce)));
	r = *ret_result ? 0 : -ENOMEM;
out:
	attest_claim_done(&c);
	trust_blob_done(&cred);
	trust_blob_done(&secret);
	return r;
}

int attest_check_quote(json_t *args, const struct trust_blob *ak,
                       const uint8_t nonce[TRUST_NONCE_LEN], unsigned pcr,
                       char ret_ak_fp[TRUST_FP_LEN], struct trust_quote *ret_quote,
                       char **ret_error)
{
	struct trust_blob own = {0}, attest = {0}, sig = {0};
	const char *measurement = json_string_value(json_object_get(args, "measurement"));
	uint8_t expected[TRUST_DIGEST_LEN], name[2 + TRUST_DIGEST_LEN];
	char why[150], fp[TRUST_FP_LEN] = "";
	int r;
	if (!is_digest_hex(measurement))
		return error_set(ret_error, -EINVAL,
		                 "field \"measurement\": expected 64 lowercase hex digits");
	digest_from_hex(measurement, expected);
	if ((!ak && (r = arg_hex(args, "ak_public", 1024, &own, ret_error)) < 0) ||
	    (r = arg_hex(args, "attest", 4096, &attest, ret_error)) < 0 ||
	    (r = arg_hex(args, "signature", 1024, &sig, ret_error)) < 0)
		goto out;
	if (!ak && trust_ak_check(&own, fp, name, why, sizeof(why)) < 0) {
		r = error_set(ret_error, -EPERM, "AK: %s", why);
		goto out;
	}
	if (trust_quote_check(ak ? ak : &own, &attest, &sig, nonce, TRUST_NONCE_LEN, pcr, expected,
	                      ret_quote, why, sizeof(why)) < 0) {
		r = error_set(ret_error, -EPERM, "quote: %s", why);
		goto out;
	}
	if (ret_ak_fp)
		memcpy(ret_ak_fp, fp, TRUST_FP_LEN);
	r = 0;
out:
	trust_blob_done(&own);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
	return r;
}

/* Checks the quote in @args (by @ak, or by the AK it carries, which must be
 * @ak_fp) and then what the store says of it: the measurement is trusted,
 * the counters did not go back. */
static int check_quote(struct attest *a, const char *host, const char *ek_fp, json_t *args,
                       const struct trust_blob *ak, const char *ak_fp, const uint8_t *nonce,
                       struct trust_quote *ret_q, char *why, size_t why_size)
{
	const struct store_state *st = store_state(a->store);
	char *e = NULL, fp[TRUST_FP_LEN];
	int r = attest_check_quote(args, ak, nonce, a->o.pcr, fp, ret_q, &e);
	if (r == 0 && !ak && strcmp(fp, ak_fp) != 0) {
		snprintf(why, why_size, "the quote is not from the AK the host joined with");
		return -EPERM;
	}
	if (r < 0) {
		snprintf(why, why_size, "%s", e ? e : "out of memory");
		free(e);
		return r;
	}
	const char *measurement = json_string_value(json_object_get(args, "measurement"));
	if (!is_trusted(st, measurement)) {
		snprintf(why, why_size, "measurement %.16s... is not trusted", measurement);
		return -EPERM;
	}
	return check_counters(trust_attestation_find(st, host), ek_fp, ret_q, why, why_size);
}

static int handle_prove(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                        char **ret_error)
{
	const char *host = ctl_arg_str(req, "host");
	const char *measurement = ctl_arg_str(req, "measurement");
	struct session *s = session_find(a, ctl_arg_str(req, "session"));
	if (!s || !host || strcmp(s->host, host) != 0 || s->expires_ms <= mono_ms())
		return error_set(
		    ret_error, -ESTALE,
		    "field \"session\": no such challenge (stale, used, or another host's)");
	/* One answer per challenge: a replayed one finds no session. */
	struct session sess = *s;
	*s = (struct session){0};
	struct trust_blob plain = {0};
	char why[STORE_REASON_MAX];
	struct trust_quote q;
	int r;
	if ((r = arg_hex(req->args, "plain", TRUST_DIGEST_LEN, &plain, ret_error)) < 0)
		goto out;
	/* TPM 2.0 Part 1, "Credential Protection": only the TPM that holds
	 * both the EK and the key named in the credential can recover it. */
	unsigned diff = plain.len != sizeof(sess.plain);
	for (size_t i = 0; !diff && i < sizeof(sess.plain); i++)
		diff |= plain.data[i] ^ sess.plain[i];
	if (diff) {
		snprintf(why, sizeof(why),
		         "credential activation failed: the AK is not in the TPM of that EK");
		r = -EPERM;
	} else {
		r = check_quote(a, host, sess.ek_fp, req->args, &sess.ak_public, NULL, sess.nonce,
		                &q, why, sizeof(why));
	}
	if (r < 0) {
		refuse(a, host, why, sess.ek_fp, measurement, true);
		r = error_set(ret_error, r, "%s", why);
		goto out;
	}
	const struct switch_location *l = switch_location_find(store_state(a->store), host);
	struct store_cmd adm = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct trust_admission *ad = STORE_CMD_ROW(&adm, struct trust_admission);
	snprintf(ad->host, sizeof(ad->host), "%s", host);
	memcpy(ad->ek_fp, sess.ek_fp, sizeof(ad->ek_fp));
	memcpy(ad->ak_fp, sess.ak_fp, sizeof(ad->ak_fp));
	snprintf(ad->measurement, sizeof(ad->measurement), "%s", measurement);
	if (l) {
		memcpy(ad->mac, l->mac, sizeof(ad->mac));
		ad->dpid = l->dpid;
		ad->port = l->port;
	}
	ad->time_ms = adm.time_ms;
	struct store_cmd t =
	    attestation_cmd(host, TRUST_ATTEST_ADMITTED, NULL, sess.ek_fp, measurement);
	STORE_CMD_ROW(&t, struct trust_attestation)->reset_count = q.reset_count;
	STORE_CMD_ROW(&t, struct trust_attestation)->restart_count = q.restart_count;
	struct ctl_deferred *d = ctl_defer(client, req);
	if (!d) {
		r = -ENOMEM;
		goto out;
	}
	log_info("trust: %s attested (measurement %.16s..., EK %.16s...)", host, measurement,
	         sess.ek_fp);
	r = commit(a, host, "admitted", &adm, &t, d);
	if (r < 0)
		ctl_deferred_reply(d, NULL, "cannot propose the admission");
	r = CTL_DEFERRED;
out:
	trust_blob_done(&sess.ak_public);
	trust_blob_done(&plain);
	return r;
}

/* ---- every host: answering the leader's quotes ---- */

static int handle_quote(struct attest *a, const struct ctl_request *req, json_t **ret_result,
                        char **ret_error)
{
	uint8_t nonce[TRUST_NONCE_LEN];
	int r = arg_hex_fixed(req->args, "nonce", nonce, sizeof(nonce), ret_error);
	if (r < 0)
		return r;
	if (!a->tpm)
		return error_set(ret_error, -EIO, "the TPM is not available: %s", a->last_error);
	struct trust_blob attest = {0}, sig = {0};
	char why[256];
	r = trust_tpm_quote(a->tpm, a->o.pcr, nonce, sizeof(nonce), &attest, &sig, why,
	                    sizeof(why));
	if (r < 0)
		return error_set(ret_error, r, "TPM quote: %s", why);
	*ret_result =
	    json_pack("{s:o, s:o, s:o, s:s}", "attest", hex_json(attest.data, attest.len),
	              "signature", hex_json(sig.data, sig.len), "ak_public",
	              hex_json(a->ak_public.data, a->ak_public.len), "measurement", a->measurement);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
	return *ret_result ? 0 : -ENOMEM;
}

int attest_handle_peer(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "trust.quote") == 0)
		return handle_quote(a, req, ret_result, ret_error);
	bool challenge = strcmp(req->cmd, "trust.challenge") == 0;
	if (!challenge && strcmp(req->cmd, "trust.prove") != 0)
		return -ENOENT;
	if (!store_is_leader(a->store))
		return not_leader(a, ret_error);
	return challenge ? handle_challenge(a, req, ret_result, ret_error)
	                 : handle_prove(a, client, req, ret_error);
}

/* ---- the leader: re-attestation ---- */

struct quote_call {
	struct attest *a;
	char host[STORE_NAME_MAX];
	uint8_t nonce[TRUST_NONCE_LEN];
};

static bool quoting(struct attest *a, const char *host, int set)
{
	size_t free_at = MAX_QUOTING;
	for (size_t i = 0; i < MAX_QUOTING; i++) {
		if (strcmp(a->quoting[i], host) == 0) {
			if (set == 0)
				a->quoting[i][0] = '\0';
			return true;
		}
		if (!a->quoting[i][0] && free_at == MAX_QUOTING)
			free_at = i;
	}
	if (set > 0 && free_at < MAX_QUOTING)
		snprintf(a->quoting[free_at], STORE_NAME_MAX, "%s", host);
	return false;
}

static void quote_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct quote_call *qc = userdata;
	struct attest *a = qc->a;
	quoting(a, qc->host, 0);
	const struct store_state *st = store_state(a->store);
	const struct trust_admission *adm = trust_admission_find(st, qc->host);
	if (a->closing || !store_is_leader(a->store) || !adm)
		goto out;
	if (status < 0) {
		/* An unreachable host is the failure detector's business; its
		 * next quote is asked for at the next tick. */
		log_debug("trust: no quote from %s: %s", qc->host, error);
		goto out;
	}
	char why[STORE_REASON_MAX];
	struct trust_quote q;
	const char *measurement = json_string_value(json_object_get(result, "measurement"));
	int r = check_quote(a, qc->host, adm->ek_fp, result, NULL, adm->ak_fp, qc->nonce, &q, why,
	                    sizeof(why));
	if (r < 0) {
		refuse(a, qc->host, why, adm->ek_fp, measurement, true);
		goto out;
	}
	struct store_cmd t =
	    attestation_cmd(qc->host, TRUST_ATTEST_ADMITTED, NULL, adm->ek_fp, measurement);
	STORE_CMD_ROW(&t, struct trust_attestation)->reset_count = q.reset_count;
	STORE_CMD_ROW(&t, struct trust_attestation)->restart_count = q.restart_count;
	struct store_cmd upd = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	*STORE_CMD_ROW(&upd, struct trust_admission) = *adm;
	bool changed = strcmp(adm->measurement, measurement) != 0;
	snprintf(STORE_CMD_ROW(&upd, struct trust_admission)->measurement,
	         sizeof(STORE_CMD_ROW(&upd, struct trust_admission)->measurement), "%s",
	         measurement);
	if (commit(a, qc->host, "re-attested", &t, changed ? &upd : NULL, NULL) < 0)
		log_warn("trust: cannot commit the re-attestation of %s", qc->host);
out:
	free(qc);
	unref(a);
}

static void reattest(struct attest *a, const char *host)
{
	const struct store_member *m = store_member_find_name(store_state(a->store), host);
	if (!m || !m->peer[0] || quoting(a, host, -1))
		return;
	struct quote_call *qc = calloc(1, sizeof(*qc));
	if (!qc || getrandom(qc->nonce, sizeof(qc->nonce), 0) != sizeof(qc->nonce)) {
		free(qc);
		return;
	}
	qc->a = a;
	snprintf(qc->host, sizeof(qc->host), "%s", host);
	json_t *args = json_pack("{s:o}", "nonce", hex_json(qc->nonce, sizeof(qc->nonce)));
	a->refs++;
	if (ctl_call(a->loop, m->peer, "trust.quote", args, CALL_TIMEOUT_MS, quote_cb, qc) < 0) {
		a->refs--;
		free(qc);
		return;
	}
	quoting(a, host, 1);
}

static void seed_done(void *userdata, int status, const struct store_result *result,
                      const char *error)
{
	struct attest *a = userdata;
	if (status == 0 && result->applied) {
		log_info("trust: this new cluster trusts its creator's measurement %.16s...",
		         a->measurement);
		if (file_write_state(a->state_dir, SEED_FILE, a->measurement) < 0)
			log_warn("trust: cannot write %s/%s", a->state_dir, SEED_FILE);
	} else {
		a->seeded = false; /* try again */
	}
	(void)error;
	unref(a);
}

/* A new cluster trusts the measurement of the agent that created it, once:
 * an admin who later removes it is not overruled. */
static void seed(struct attest *a, const struct store_state *st)
{
	const struct store_cluster *c = store_cluster(st);
	if (a->seeded || c->generation != 1 || strcmp(c->by, a->host) != 0 ||
	    store_count(st, TRUST_TRUSTED) > 0)
		return;
	char *text;
	if (file_read_state(a->state_dir, SEED_FILE, &text) == 0) {
		free(text);
		a->seeded = true;
		return;
	}
	struct store_cmd cmd = {.table = TRUST_TRUSTED, .op = STORE_PUT, .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct trust_trusted)->digest,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_trusted)->digest), "%s", a->measurement);
	snprintf(STORE_CMD_ROW(&cmd, struct trust_trusted)->note,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_trusted)->note),
	         "the agent that created this cluster (%s)", a->host);
	STORE_CMD_ROW(&cmd, struct trust_trusted)->added_ms = cmd.time_ms;
	a->seeded = true;
	a->refs++;
	if (store_propose(a->store, &cmd, seed_done, a) < 0) {
		a->refs--;
		a->seeded = false;
	}
}

static void lead(struct attest *a)
{
	const struct store_state *st = store_state(a->store);
	seed(a, st);
	uint64_t now = wall_ms();
	for (size_t i = 0; i < store_count(st, TRUST_ADMISSIONS); i++) {
		const struct trust_admission *adm = store_row(st, TRUST_ADMISSIONS, i);
		const struct trust_attestation *t = trust_attestation_find(st, adm->host);
		/* Admitted by the admin before attestation was on: not ours. */
		if (!t || t->state != TRUST_ATTEST_ADMITTED)
			continue;
		if (!is_trusted(st, adm->measurement)) {
			char why[STORE_REASON_MAX];
			snprintf(why, sizeof(why), "measurement %.16s... is no longer trusted",
			         adm->measurement);
			refuse(a, adm->host, why, adm->ek_fp, adm->measurement, true);
			continue;
		}
		if (now >= t->time_ms + a->o.reattest_ms)
			reattest(a, adm->host);
	}
}

/* ---- this host: joining ---- */

struct join_call {
	struct attest *a;
	char leader[STORE_ADDR_MAX];
};

static void join_failed(struct attest *a, const char *error)
{
	if (strcmp(a->last_error, error) != 0)
		log_warn("trust: not admitted: %s", error);
	snprintf(a->last_error, sizeof(a->last_error), "%s", error);
	a->joining = false;
	a->next_try_ms = mono_ms() + RETRY_MS;
}

static void prove_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct join_call *j = userdata;
	struct attest *a = j->a;
	(void)result;
	if (!a->closing) {
		if (status < 0) {
			join_failed(a, error);
		} else {
			log_info("trust: admitted by attestation (measurement %.16s...)",
			         a->measurement);
			a->last_error[0] = '\0';
			a->joining = a->fresh = false;
			a->admitted_ms = wall_ms();
		}
	}
	free(j);
	unref(a);
}

static void challenge_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct join_call *j = userdata;
	struct attest *a = j->a;
	struct trust_blob cred = {0}, secret = {0}, plain = {0}, attest = {0}, sig = {0};
	uint8_t nonce[TRUST_NONCE_LEN];
	char why[256], *e = NULL;
	const char *session = json_string_value(json_object_get(result, "session"));
	if (a->closing)
		goto out;
	if (status < 0) {
		join_failed(a, error);
		goto out;
	}
	if (!session || arg_hex(result, "credential", 1024, &cred, &e) < 0 ||
	    arg_hex(result, "secret", 1024, &secret, &e) < 0 ||
	    arg_hex_fixed(result, "nonce", nonce, sizeof(nonce), &e) < 0) {
		snprintf(why, sizeof(why), "the leader's challenge: %s", e ? e : "no session");
		join_failed(a, why);
		goto out;
	}
	char twhy[200] = "the TPM is not available";
	if (!a->tpm || trust_tpm_activate(a->tpm, &cred, &secret, &plain, twhy, sizeof(twhy)) < 0 ||
	    trust_tpm_quote(a->tpm, a->o.pcr, nonce, sizeof(nonce), &attest, &sig, twhy,
	                    sizeof(twhy)) < 0) {
		snprintf(why, sizeof(why), "TPM: %s", twhy);
		join_failed(a, why);
		goto out;
	}
	json_t *args = json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:o}", "host", a->host, "session", session, "measurement",
	    a->measurement, "plain", hex_json(plain.data, plain.len), "attest",
	    hex_json(attest.data, attest.len), "signature", hex_json(sig.data, sig.len));
	a->refs++;
	if (ctl_call(a->loop, j->leader, "trust.prove", args, CALL_TIMEOUT_MS, prove_cb, j) < 0) {
		a->refs--;
		join_failed(a, "cannot call the leader");
		goto out;
	}
	j = NULL;
out:
	free(e);
	trust_blob_done(&cred);
	trust_blob_done(&secret);
	trust_blob_done(&plain);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
	free(j);
	unref(a);
}

static bool admitted(const struct attest *a, const struct store_state *st)
{
	const struct trust_admission *adm = trust_admission_find(st, a->host);
	const struct trust_attestation *t = trust_attestation_find(st, a->host);
	return adm && strcmp(adm->ak_fp, a->ak_fp) == 0 && t && t->state == TRUST_ATTEST_ADMITTED;
}

static void join(struct attest *a)
{
	const struct store_state *st = store_state(a->store);
	const struct store_member *l = store_member_find(st, store_leader_id(a->store));
	if (!l || !l->peer[0] || !store_member_find_name(st, a->host))
		return; /* not in the cluster yet: the store is joining it */
	struct join_call *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->a = a;
	snprintf(j->leader, sizeof(j->leader), "%s", l->peer);
	json_t *args = json_pack("{s:s, s:o, s:o, s:o}", "host", a->host, "ek_cert",
	                         hex_json(a->ek_cert.data, a->ek_cert.len), "ek_public",
	                         hex_json(a->ek_public.data, a->ek_public.len), "ak_public",
	                         hex_json(a->ak_public.data, a->ak_public.len));
	a->refs++;
	if (ctl_call(a->loop, j->leader, "trust.challenge", args, CALL_TIMEOUT_MS, challenge_cb,
	             j) < 0) {
		a->refs--;
		free(j);
		return;
	}
	a->joining = true;
	/* Once per measurement: a refused host retries quietly. */
	if (a->fresh && !a->last_error[0])
		log_info("trust: attesting to the leader %s", l->name);
}

/* A TPM that was reset (swtpm restarted, the machine rebooted) has lost its
 * PCRs and loaded keys: open it again, measure again, attest again. */
static void watch_tpm(struct attest *a)
{
	uint32_t reset, restart;
	char error[256];
	if (a->tpm && trust_tpm_counters(a->tpm, &reset, &restart, error, sizeof(error)) == 0 &&
	    reset == a->reset_count && restart == a->restart_count)
		return;
	struct trust_tpm *t;
	trust_blob_done(&a->ak_public);
	trust_tpm_close(a->tpm);
	a->tpm = NULL;
	if (trust_tpm_open(a->o.tcti, &t, error, sizeof(error)) < 0) {
		join_failed(a, error);
		return;
	}
	a->tpm = t;
	if (trust_tpm_ak(t, &a->ak_public, error, sizeof(error)) < 0 ||
	    measure(a, error, sizeof(error)) < 0) {
		join_failed(a, error);
		return;
	}
	log_info("trust: the TPM was reset (reset count %u); measured again", a->reset_count);
}

static void tick(uv_timer_t *timer)
{
	struct attest *a = timer->data;
	if (!a->joining)
		watch_tpm(a);
	/* The leader first: a new cluster's creator seeds the trusted
	 * measurements before it attests to itself. Verifying others needs
	 * no TPM. */
	if (store_is_leader(a->store))
		lead(a);
	const struct store_state *st = store_state(a->store);
	if (a->tpm && !a->joining && (a->fresh || !admitted(a, st)) && mono_ms() >= a->next_try_ms)
		join(a);
}

/* ---- the admin ---- */

int attest_handle_admin(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	bool admit = strcmp(req->cmd, "hosts.admit") == 0;
	if (!admit && strcmp(req->cmd, "hosts.revoke") != 0)
		return -ENOENT;
	const char *host = ctl_arg_str(req, "host");
	const struct store_state *st = store_state(a->store);
	if (!host || !store_member_find_name(st, host))
		return error_set(ret_error, -ENOENT, "no member named \"%s\" (see 'ettmctl hosts')",
		                 host ? host : "");
	const struct trust_attestation *t = trust_attestation_find(st, host);
	struct ctl_deferred *d;
	if (admit) {
		if (!t || t->state == TRUST_ATTEST_ADMITTED) {
			*ret_result = json_pack("{s:s, s:s}", "host", host, "result",
			                        t ? "admitted already" : "attests on its own");
			return 0;
		}
		/* Forget the refusal and the TPM it was bound to: the host's
		 * next attempt is judged afresh. */
		struct store_cmd del = {
		    .table = TRUST_ATTESTATIONS, .op = STORE_DELETE, .time_ms = wall_ms()};
		snprintf(STORE_CMD_ROW(&del, struct trust_attestation)->host,
		         sizeof(STORE_CMD_ROW(&del, struct trust_attestation)->host), "%s", host);
		if (!(d = ctl_defer(client, req)))
			return -ENOMEM;
		if (commit(a, host, "may attest again", &del, NULL, d) < 0)
			ctl_deferred_reply(d, NULL, "cannot propose");
		return CTL_DEFERRED;
	}
	struct store_cmd rev = attestation_cmd(host, TRUST_ATTEST_REVOKED, "revoked by the admin",
	                                       t ? t->ek_fp : NULL, t ? t->measurement : NULL);
	struct store_cmd del = admission_delete(host);
	if (!(d = ctl_defer(client, req)))
		return -ENOMEM;
	if (commit(a, host, "revoked", &rev, &del, d) < 0)
		ctl_deferred_reply(d, NULL, "cannot propose");
	return CTL_DEFERRED;
}

const char *attest_measurement(const struct attest *a)
{
	return a->measurement;
}

json_t *attest_status(const struct attest *a)
{
	const struct store_state *st = store_state(a->store);
	return json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:I, s:I, s:s?}", "tcti", a->o.tcti, "pcr",
	                 (int)a->o.pcr, "measurement", a->measurement, "ek_fp", a->ek_fp, "ak_fp",
	                 a->ak_fp, "admitted", admitted(a, st), "reset_count",
	                 (json_int_t)a->reset_count, "admitted_ms", (json_int_t)a->admitted_ms,
	                 "last_error", a->last_error[0] ? a->last_error : NULL);
}

/* ---- opening ---- */

static int open_tpm(struct attest *a, const char *binary, const char *config_text, char *error,
                    size_t error_size)
{
	int r = digests_of(binary, config_text, a->digests, error, error_size);
	if (r < 0)
		return r;
	char why[256];
	uint8_t name[2 + TRUST_DIGEST_LEN];
	if ((r = trust_tpm_open(a->o.tcti, &a->tpm, why, sizeof(why))) < 0 ||
	    (r = measure(a, why, sizeof(why))) < 0 ||
	    (r = trust_tpm_ek(a->tpm, &a->ek_cert, &a->ek_public, why, sizeof(why))) < 0 ||
	    (r = trust_tpm_ak(a->tpm, &a->ak_public, why, sizeof(why))) < 0 ||
	    (r = trust_ak_check(&a->ak_public, a->ak_fp, name, why, sizeof(why))) < 0) {
		snprintf(error, error_size, "TPM %s: %s", a->o.tcti, why);
		return r;
	}
	/* The fingerprint the leader will record: that of the certificate. */
	trust_sha256(a->ek_cert.data, a->ek_cert.len, name + 2);
	trust_hex(name + 2, TRUST_DIGEST_LEN, a->ek_fp);
	return 0;
}

int attest_open(uv_loop_t *loop, const struct attest_options *o, const char *host,
                const char *binary, const char *config_text, const char *state_dir,
                struct store *store, struct attest **ret_attest, char *error, size_t error_size)
{
	struct attest *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(error, error_size, "out of memory");
		return -ENOMEM;
	}
	a->loop = loop;
	a->o = *o;
	a->store = store;
	a->refs = 1;
	snprintf(a->host, sizeof(a->host), "%s", host);
	snprintf(a->state_dir, sizeof(a->state_dir), "%s", state_dir);
	int r = open_tpm(a, binary, config_text, error, error_size);
	if (r < 0) {
		unref(a);
		return r;
	}
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	uv_timer_start(&a->timer, tick, 0, TICK_MS);
	*ret_attest = a;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	unref(h->data);
}

void attest_close(struct attest *a)
{
	if (!a)
		return;
	a->closing = true;
	uv_close((uv_handle_t *)&a->timer, timer_closed);
}
