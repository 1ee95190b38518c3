/* Attestation, the leader's side of the join protocol (docs/trust.md): the
 * sessions of trust.challenge, the verdict on trust.prove, committing its
 * conclusions (admissions, refusals, revocations) to the store, the peer
 * commands' dispatch, and the admin's hosts.admit and hosts.revoke. */
#include "attest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/cleanup.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "trust/attest-internal.h"
#include "trust/tables.h"
#include "switch/tables.h"

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
	attest_unref(c->a);
	free(c);
}

/* Proposes @first, then @second (if not NULL) once @first is applied;
 * replies to @reply (may be NULL) after the last. */
int attest_commit(struct attest *a, const char *host, const char *what,
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

static struct store_cmd admission_delete(const char *host)
{
	struct store_cmd cmd = {
	    .table = TRUST_ADMISSIONS, .op = STORE_DELETE, .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_admission)->host), "%s", host);
	return cmd;
}

/* Records that @host failed to attest, and why; unless @how is
 * REFUSE_ATTEMPT its admission goes too (its port closes), and with
 * REFUSE_CHANGED its key loses Raft (gate.h). The same refusal is not
 * committed again within REFUSAL_REPEAT_MS, so a host retrying does not
 * fill the log. */
void attest_refuse(struct attest *a, const char *host, const char *reason, const char *ek_fp,
                   const char *measurement, enum attest_refusal how)
{
	const struct store_state *st = store_state(a->store);
	const struct trust_attestation *old = trust_attestation_find(st, host);
	bool admitted = trust_admission_find(st, host) != NULL;
	if (how == REFUSE_ATTEMPT && admitted) {
		log_debug("trust: a challenge for %s refused: %s", host, reason);
		return; /* not proven to come from the host: leave its admission */
	}
	/* A changed host stays so until a good attempt: a later refusal of
	 * its join (the same measurement) does not give it Raft back. */
	unsigned state = how == REFUSE_CHANGED || (old && old->state == TRUST_ATTEST_CHANGED)
	                     ? TRUST_ATTEST_CHANGED
	                     : TRUST_ATTEST_REFUSED;
	if (old && old->state == state && strcmp(old->reason, reason) == 0 &&
	    wall_ms() - old->time_ms < REFUSAL_REPEAT_MS && !admitted)
		return;
	log_warn("trust: %s refused%s: %s%s", host, admitted ? " and revoked" : "", reason,
	         state == TRUST_ATTEST_CHANGED ? " (its measurement changed: its TLS key speaks "
	                                         "no Raft until it attests with a trusted one)"
	                                       : "");
	/* A host name stays bound to the TPM it attested with. */
	if (old && old->ek_fp[0])
		ek_fp = old->ek_fp;
	struct store_cmd t = attestation_cmd(host, state, reason, ek_fp, measurement);
	/* The key stays known as this host's. */
	const struct trust_admission *adm = trust_admission_find(st, host);
	attestation_set_key(&t, old && old->tls_fp[0] ? old->tls_fp : adm ? adm->tls_fp : NULL);
	struct store_cmd del = admission_delete(host);
	if (attest_commit(a, host, "refusal", &t, admitted ? &del : NULL, NULL) < 0)
		log_warn("trust: cannot commit the refusal of %s", host);
}

bool attest_is_trusted(const struct store_state *st, const char *measurement)
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
                          const struct trust_quote *q, char **ret_error)
{
	if (!old || old->state != TRUST_ATTEST_ADMITTED || strcmp(old->ek_fp, ek_fp) != 0)
		return 0;
	if (q->reset_count < old->reset_count ||
	    (q->reset_count == old->reset_count && q->restart_count < old->restart_count))
		return error_set(
		    ret_error, -EPERM,
		    "TPM counters went back (reset %u, restart %u after %u, %u): a replayed "
		    "quote or a rolled-back TPM",
		    q->reset_count, q->restart_count, old->reset_count, old->restart_count);
	return 0;
}

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

struct client_key {
	char fp[TRUST_FP_LEN];
};

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

/* The TLS key a join speaks with: the key of @client's connection, which
 * the message's "tls_spki" must name too. Over plaintext (an agent without
 * TLS), the key the message names, if any. */
static int join_key(struct client_key *k, struct ctl_client *client, const struct ctl_request *req,
                    char **ret_error)
{
	const char *channel = ctl_client_peer_fp(client);
	bool named = json_object_get(req->args, "tls_spki") != NULL;
	k->fp[0] = '\0';
	if (!channel && !named)
		return 0;
	if (!named)
		return error_set(
		    ret_error, -EINVAL,
		    "field \"tls_spki\": the TLS key this host speaks with is missing");
	int r = attest_arg_tls_key(req->args, k->fp, ret_error);
	if (r < 0)
		return r;
	if (channel && strcmp(channel, k->fp) != 0)
		return error_set(ret_error, -EPERM,
		                 "field \"tls_spki\": key %.16s... is not the key of this TLS "
		                 "connection (%.16s...)",
		                 k->fp, channel);
	return 0;
}

static int handle_challenge(struct attest *a, struct ctl_client *client,
                            const struct ctl_request *req, json_t **ret_result, char **ret_error)
{
	const char *host = ctl_arg_str(req, "host");
	struct client_key key;
	int r = check_host(a, host, ret_error);
	if (r < 0 || (r = join_key(&key, client, req, ret_error)) < 0)
		return r;
	struct attest_claim c;
	r = attest_check_challenge(req->args, a->o.ca, &c, ret_error);
	if (r == -EPERM)
		attest_refuse(a, host, *ret_error ? *ret_error : "bad EK or AK", NULL, NULL,
		              REFUSE_ATTEMPT);
	if (r < 0)
		return r;
	struct trust_blob cred = {0}, secret = {0};
	_cleanup_free_ char *why = NULL;
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
	                               &secret, &why)) < 0) {
		r = error_set(ret_error, r, "cannot make a credential for that EK: %s", WHY(why));
		goto out;
	}
	hex_encode(id, sizeof(id), s->id);
	snprintf(s->host, sizeof(s->host), "%s", host);
	memcpy(s->ek_fp, c.ek_fp, sizeof(s->ek_fp));
	memcpy(s->ak_fp, c.ak_fp, sizeof(s->ak_fp));
	memcpy(s->tls_fp, key.fp, sizeof(s->tls_fp));
	s->ak_public = c.ak_public;
	c.ak_public = (struct trust_blob){0};
	s->expires_ms = mono_ms() + SESSION_MS;
	s->conn = ctl_client_id(client);
	*ret_result = json_pack("{s:s, s:o, s:o, s:o}", "session", s->id, "credential",
	                        attest_hex_json(cred.data, cred.len), "secret",
	                        attest_hex_json(secret.data, secret.len), "nonce",
	                        attest_hex_json(s->nonce, sizeof(s->nonce)));
	r = *ret_result ? 0 : -ENOMEM;
out:
	attest_claim_done(&c);
	trust_blob_done(&cred);
	trust_blob_done(&secret);
	return r;
}

/* Checks the quote in @args (by @ak, or by the AK it carries, which must be
 * @ak_fp) and then what the store says of it: the measurement is trusted,
 * the counters did not go back. */
int attest_check_stored_quote(struct attest *a, const char *host, const char *ek_fp, json_t *args,
                              const struct trust_blob *ak, const char *ak_fp, const uint8_t *nonce,
                              struct trust_quote *ret_q, char **ret_error)
{
	const struct store_state *st = store_state(a->store);
	char fp[TRUST_FP_LEN];
	int r = attest_check_quote(args, ak, nonce, a->o.pcr, fp, ret_q, ret_error);
	if (r < 0)
		return r;
	if (!ak && strcmp(fp, ak_fp) != 0)
		return error_set(ret_error, -EPERM,
		                 "the quote is not from the AK the host joined with");
	const char *measurement = json_string_value(json_object_get(args, "measurement"));
	if (!attest_is_trusted(st, measurement))
		return error_set(ret_error, -EPERM, "measurement %.16s... is not trusted",
		                 measurement);
	return check_counters(trust_attestation_find(st, host), ek_fp, ret_q, ret_error);
}

static int handle_prove(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                        char **ret_error)
{
	const char *host = ctl_arg_str(req, "host");
	const char *measurement = ctl_arg_str(req, "measurement");
	struct session *s = session_find(a, ctl_arg_str(req, "session"));
	struct client_key key;
	if (!s || !host || strcmp(s->host, host) != 0 || s->expires_ms <= mono_ms())
		return error_set(
		    ret_error, -ESTALE,
		    "field \"session\": no such challenge (stale, used, or another host's)");
	/* Checked before the session is used up: an answer on another
	 * connection does not spend the challenge of the host that asked. */
	if (s->conn != ctl_client_id(client))
		return error_set(ret_error, -ESTALE,
		                 "field \"session\": that challenge was asked on another "
		                 "connection; answer it on the connection that asked");
	/* The answer comes with the key the challenge went to, or it is not
	 * the host's: the session stays for the host's own answer. */
	int r = join_key(&key, client, req, ret_error);
	if (r < 0)
		return r;
	if (strcmp(key.fp, s->tls_fp) != 0)
		return error_set(ret_error, -EPERM,
		                 "trust.prove came with TLS key %.16s... but its trust.challenge "
		                 "with %.16s...",
		                 key.fp[0] ? key.fp : "(none)",
		                 s->tls_fp[0] ? s->tls_fp : "(none)");
	/* One answer per challenge: a replayed one finds no session. */
	struct session sess = *s;
	*s = (struct session){0};
	struct trust_blob plain = {0};
	_cleanup_free_ char *why = NULL;
	struct trust_quote q;
	uint8_t bound[TRUST_NONCE_LEN];
	attest_bind_nonce(sess.nonce, sess.tls_fp, bound);
	if ((r = attest_arg_hex(req->args, "plain", TRUST_DIGEST_LEN, &plain, ret_error)) < 0)
		goto out;
	/* TPM 2.0 Part 1, "Credential Protection": only the TPM that holds
	 * both the EK and the key named in the credential can recover it. */
	unsigned diff = plain.len != sizeof(sess.plain);
	for (size_t i = 0; !diff && i < sizeof(sess.plain); i++)
		diff |= plain.data[i] ^ sess.plain[i];
	if (diff)
		r = error_set(&why, -EPERM,
		              "credential activation failed: the AK is not in the TPM of that EK");
	else
		r = attest_check_stored_quote(a, host, sess.ek_fp, req->args, &sess.ak_public, NULL,
		                              bound, &q, &why);
	if (r < 0) {
		/* Whoever answered may not be the host (a replayed challenge
		 * answered wrongly): a refusal of this attempt only, never a
		 * revocation. An admitted host is quoted at once at its own
		 * address instead: if it is the one that failed, that revokes it.
		 * The name is bound to the EK only once its TPM proved it holds
		 * the AK: a stranger answering with any EK certificate of the CA
		 * must not lock the real host out ("attested before with another
		 * TPM"). */
		attest_refuse(a, host, WHY(why), diff ? NULL : sess.ek_fp, measurement,
		              REFUSE_ATTEMPT);
		if (trust_admission_find(store_state(a->store), host))
			attest_reattest(a, host);
		r = error_set(ret_error, r, "%s", WHY(why));
		goto out;
	}
	const struct switch_location *l = switch_location_find(store_state(a->store), host);
	struct store_cmd adm = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	struct trust_admission *ad = STORE_CMD_ROW(&adm, struct trust_admission);
	snprintf(ad->host, sizeof(ad->host), "%s", host);
	memcpy(ad->ek_fp, sess.ek_fp, sizeof(ad->ek_fp));
	memcpy(ad->ak_fp, sess.ak_fp, sizeof(ad->ak_fp));
	snprintf(ad->measurement, sizeof(ad->measurement), "%s", measurement);
	memcpy(ad->tls_fp, sess.tls_fp, sizeof(ad->tls_fp));
	if (l) {
		memcpy(ad->mac, l->mac, sizeof(ad->mac));
		ad->dpid = l->dpid;
		ad->port = l->port;
	}
	ad->time_ms = adm.time_ms;
	struct store_cmd t =
	    attestation_cmd(host, TRUST_ATTEST_ADMITTED, NULL, sess.ek_fp, measurement);
	attestation_set_key(&t, sess.tls_fp);
	STORE_CMD_ROW(&t, struct trust_attestation)->reset_count = q.reset_count;
	STORE_CMD_ROW(&t, struct trust_attestation)->restart_count = q.restart_count;
	struct ctl_deferred *d = ctl_defer(client, req);
	if (!d) {
		r = -ENOMEM;
		goto out;
	}
	log_info("trust: %s attested (measurement %.16s..., EK %.16s..., TLS key %.16s...)", host,
	         measurement, sess.ek_fp, sess.tls_fp);
	r = attest_commit(a, host, "admitted", &adm, &t, d);
	if (r < 0)
		ctl_deferred_reply(d, NULL, "cannot propose the admission");
	r = CTL_DEFERRED;
out:
	trust_blob_done(&sess.ak_public);
	trust_blob_done(&plain);
	return r;
}

int attest_handle_peer(struct attest *a, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "trust.quote") == 0)
		return attest_answer_quote(a, req, ret_result, ret_error);
	bool challenge = strcmp(req->cmd, "trust.challenge") == 0;
	if (!challenge && strcmp(req->cmd, "trust.prove") != 0)
		return -ENOENT;
	if (!store_is_leader(a->store))
		return not_leader(a, ret_error);
	return challenge ? handle_challenge(a, client, req, ret_result, ret_error)
	                 : handle_prove(a, client, req, ret_error);
}

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
		if (attest_commit(a, host, "may attest again", &del, NULL, d) < 0)
			ctl_deferred_reply(d, NULL, "cannot propose");
		return CTL_DEFERRED;
	}
	struct store_cmd rev = attestation_cmd(host, TRUST_ATTEST_REVOKED, "revoked by the admin",
	                                       t ? t->ek_fp : NULL, t ? t->measurement : NULL);
	const struct trust_admission *adm = trust_admission_find(st, host);
	attestation_set_key(&rev, t && t->tls_fp[0] ? t->tls_fp : adm ? adm->tls_fp : NULL);
	struct store_cmd del = admission_delete(host);
	if (!(d = ctl_defer(client, req)))
		return -ENOMEM;
	if (attest_commit(a, host, "revoked", &rev, &del, d) < 0)
		ctl_deferred_reply(d, NULL, "cannot propose");
	return CTL_DEFERRED;
}
