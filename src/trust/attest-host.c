/* Attestation, this host's side: measuring the agent into its TPM, joining
 * the cluster (trust.challenge, then trust.prove with the activated
 * credential and a quote), answering the leader's trust.quote, and opening
 * the TPM again when it was reset. */
#include "attest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/client.h"
#include "lib/cleanup.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "trust/attest-internal.h"
#include "trust/tables.h"

/* Resets the PCR and extends it with the binary's and the configuration's
 * digests; checks that the TPM then holds what the verifier will expect. */
static int measure(struct attest *a, char **ret_error)
{
	int r = trust_tpm_measure(a->tpm, a->o.pcr, (const uint8_t(*)[TRUST_DIGEST_LEN])a->digests,
	                          2, ret_error);
	if (r < 0)
		return r;
	uint8_t value[TRUST_DIGEST_LEN], expected[TRUST_DIGEST_LEN];
	r = trust_tpm_pcr_read(a->tpm, a->o.pcr, value, ret_error);
	if (r < 0)
		return r;
	trust_pcr_replay((const uint8_t(*)[TRUST_DIGEST_LEN])a->digests, 2, expected);
	if (memcmp(value, expected, sizeof(value)) != 0)
		return error_set(ret_error, -EIO,
		                 "PCR %u does not hold the measurement after extending it (another "
		                 "program extends it too?)",
		                 a->o.pcr);
	hex_encode(value, sizeof(value), a->measurement);
	a->fresh = true;
	return trust_tpm_counters(a->tpm, &a->reset_count, &a->restart_count, ret_error);
}

int attest_answer_quote(struct attest *a, const struct ctl_request *req, json_t **ret_result,
                        char **ret_error)
{
	uint8_t nonce[TRUST_NONCE_LEN];
	int r = attest_arg_hex_fixed(req->args, "nonce", nonce, sizeof(nonce), ret_error);
	if (r < 0)
		return r;
	if (!a->tpm)
		return error_set(ret_error, -EIO, "the TPM is not available: %s", a->last_error);
	struct trust_blob attest = {0}, sig = {0};
	_cleanup_free_ char *why = NULL;
	uint8_t bound[TRUST_NONCE_LEN];
	attest_bind_nonce(nonce, a->tls_fp, bound);
	r = trust_tpm_quote(a->tpm, a->o.pcr, bound, sizeof(bound), &attest, &sig, &why);
	if (r < 0)
		return error_set(ret_error, r, "TPM quote: %s", WHY(why));
	*ret_result = json_pack(
	    "{s:o, s:o, s:o, s:s}", "attest", attest_hex_json(attest.data, attest.len), "signature",
	    attest_hex_json(sig.data, sig.len), "ak_public",
	    attest_hex_json(a->ak_public.data, a->ak_public.len), "measurement", a->measurement);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
	return *ret_result ? 0 : -ENOMEM;
}

/* One attempt: the challenge and its answer on one connection, to which
 * the leader binds the session. */
struct join_call {
	struct attest *a;
	struct ctl_conn *conn;
	char leader[STORE_ADDR_MAX];
};

static void join_call_free(struct join_call *j)
{
	if (!j)
		return;
	ctl_conn_close(j->conn);
	free(j);
}

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
			a->cut_since_ms = 0;
			a->admitted_ms = wall_ms();
			/* A host admitted for the first time starts replicating
			 * now: its replica shows the admission shortly. */
			a->next_try_ms = mono_ms() + RETRY_MS;
		}
	}
	join_call_free(j);
	attest_unref(a);
}

static void challenge_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct join_call *j = userdata;
	struct attest *a = j->a;
	struct trust_blob cred = {0}, secret = {0}, plain = {0}, attest = {0}, sig = {0};
	uint8_t nonce[TRUST_NONCE_LEN], bound[TRUST_NONCE_LEN];
	char why[256], *e = NULL;
	const char *session = json_string_value(json_object_get(result, "session"));
	if (a->closing)
		goto out;
	if (status < 0) {
		join_failed(a, error);
		goto out;
	}
	if (!session || attest_arg_hex(result, "credential", 1024, &cred, &e) < 0 ||
	    attest_arg_hex(result, "secret", 1024, &secret, &e) < 0 ||
	    attest_arg_hex_fixed(result, "nonce", nonce, sizeof(nonce), &e) < 0) {
		snprintf(why, sizeof(why), "the leader's challenge: %s", e ? e : "no session");
		join_failed(a, why);
		goto out;
	}
	if (!a->tpm)
		e = strdup("the TPM is not available");
	/* The quote binds the key this host speaks TLS with (docs/trust.md). */
	attest_bind_nonce(nonce, a->tls_fp, bound);
	if (!a->tpm || trust_tpm_activate(a->tpm, &cred, &secret, &plain, &e) < 0 ||
	    trust_tpm_quote(a->tpm, a->o.pcr, bound, sizeof(bound), &attest, &sig, &e) < 0) {
		snprintf(why, sizeof(why), "TPM: %s", WHY(e));
		join_failed(a, why);
		goto out;
	}
	json_t *args = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:O*}", "host", a->host, "session",
	                         session, "measurement", a->measurement, "plain",
	                         attest_hex_json(plain.data, plain.len), "attest",
	                         attest_hex_json(attest.data, attest.len), "signature",
	                         attest_hex_json(sig.data, sig.len), "tls_spki", a->tls_spki);
	a->refs++;
	if (ctl_conn_call(j->conn, "trust.prove", args, CALL_TIMEOUT_MS, prove_cb, j) < 0) {
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
	join_call_free(j);
	attest_unref(a);
}

bool attest_admitted(const struct attest *a, const struct store_state *st)
{
	const struct trust_admission *adm = trust_admission_find(st, a->host);
	const struct trust_attestation *t = trust_attestation_find(st, a->host);
	/* An admission of another TLS key (or of none: made before encoding
	 * 5) is stale: the agents do not hear this host by it, so it joins
	 * again. */
	return adm && strcmp(adm->ak_fp, a->ak_fp) == 0 && strcmp(adm->tls_fp, a->tls_fp) == 0 &&
	       t && t->state == TRUST_ATTEST_ADMITTED;
}

void attest_join(struct attest *a)
{
	const struct store_state *st = store_state(a->store);
	const struct store_member *l = store_member_find(st, store_leader_id(a->store));
	bool member = store_member_find_name(st, a->host) != NULL;
	/* A host that joined but was never admitted replicates nothing
	 * (trust/gate.h): it attests to the leader that accepted its join. A
	 * member cut off from Raft (its measurement changed, then its binary
	 * was trusted or put back) attests to the leader the others name. */
	const char *heard = member ? store_heard_leader(a->store) : "";
	const char *leader = l && l->peer[0] && member ? l->peer
	                     : heard[0]                ? heard
	                                               : store_joined_via(a->store);
	if (!leader[0])
		return; /* not in the cluster yet: the store is joining it */
	struct join_call *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->a = a;
	snprintf(j->leader, sizeof(j->leader), "%s", leader);
	json_t *args = json_pack("{s:s, s:o, s:o, s:o, s:O*}", "host", a->host, "ek_cert",
	                         attest_hex_json(a->ek_cert.data, a->ek_cert.len), "ek_public",
	                         attest_hex_json(a->ek_public.data, a->ek_public.len), "ak_public",
	                         attest_hex_json(a->ak_public.data, a->ak_public.len), "tls_spki",
	                         a->tls_spki);
	if (ctl_conn_open(a->loop, j->leader, &j->conn) < 0) {
		json_decref(args);
		free(j);
		return;
	}
	a->refs++;
	if (ctl_conn_call(j->conn, "trust.challenge", args, CALL_TIMEOUT_MS, challenge_cb, j) < 0) {
		a->refs--;
		join_call_free(j);
		return;
	}
	a->joining = true;
	/* Once per measurement: a refused host retries quietly. */
	if (a->fresh && !a->last_error[0])
		log_info("trust: attesting to the leader %s", l ? l->name : leader);
}

/* A TPM that was reset (swtpm restarted, the machine rebooted) has lost its
 * PCRs and loaded keys: open it again, measure again, attest again. */
void attest_watch_tpm(struct attest *a)
{
	uint32_t reset, restart;
	_cleanup_free_ char *error = NULL;
	if (a->tpm && trust_tpm_counters(a->tpm, &reset, &restart, &error) == 0 &&
	    reset == a->reset_count && restart == a->restart_count)
		return;
	free(TAKE_PTR(error)); /* a TPM that stopped answering is opened again */
	struct trust_tpm *t;
	trust_blob_done(&a->ak_public);
	trust_tpm_close(a->tpm);
	a->tpm = NULL;
	if (trust_tpm_open(a->o.tcti, &t, &error) < 0) {
		join_failed(a, WHY(error));
		return;
	}
	a->tpm = t;
	if (trust_tpm_ak(t, &a->ak_public, &error) < 0 || measure(a, &error) < 0) {
		join_failed(a, WHY(error));
		return;
	}
	log_info("trust: the TPM was reset (reset count %u); measured again", a->reset_count);
}

int attest_open_tpm(struct attest *a, const char *binary, const char *config_text, char **ret_error)
{
	int r = trust_agent_digests(binary, config_text, a->digests, ret_error);
	if (r < 0)
		return r;
	_cleanup_free_ char *why = NULL;
	uint8_t name[2 + TRUST_DIGEST_LEN];
	if ((r = trust_tpm_open(a->o.tcti, &a->tpm, &why)) < 0 || (r = measure(a, &why)) < 0 ||
	    (r = trust_tpm_ek(a->tpm, &a->ek_cert, &a->ek_public, &why)) < 0 ||
	    (r = trust_tpm_ak(a->tpm, &a->ak_public, &why)) < 0 ||
	    (r = trust_ak_check(&a->ak_public, a->ak_fp, name, &why)) < 0)
		return error_set(ret_error, r, "TPM %s: %s", a->o.tcti, WHY(why));
	/* The fingerprint the leader will record: that of the certificate. */
	trust_sha256(a->ek_cert.data, a->ek_cert.len, name + 2);
	hex_encode(name + 2, TRUST_DIGEST_LEN, a->ek_fp);
	return 0;
}
