/* Attestation, the leader's continuing checks: it quotes every host it
 * admitted by attestation again every reattest_ms (a changed or no longer
 * trusted measurement revokes the admission), and a new cluster's creator
 * seeds the trusted measurements with its own. */
#include "attest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "api/client.h"
#include "lib/cleanup.h"
#include "lib/clock.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "trust/attest-internal.h"
#include "trust/tables.h"

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
	_cleanup_free_ char *why = NULL; /* before any goto: freed on every path */
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
	struct trust_quote q;
	const char *measurement = json_string_value(json_object_get(result, "measurement"));
	uint8_t bound[TRUST_NONCE_LEN];
	/* The quote binds the key the host was admitted with (docs/trust.md). */
	attest_bind_nonce(qc->nonce, adm->tls_fp, bound);
	int r = attest_check_stored_quote(a, qc->host, adm->ek_fp, result, NULL, adm->ak_fp, bound,
	                                  &q, &why);
	if (r < 0) {
		/* Quoted at its own address with its admitted key: the host's own
		 * answer. A measurement of its own that is new and untrusted is
		 * software that changed (docs/trust.md, "Who may speak"). */
		bool changed = measurement && strcmp(measurement, adm->measurement) != 0 &&
		               !attest_is_trusted(st, measurement);
		attest_refuse(a, qc->host, WHY(why), adm->ek_fp, measurement,
		              changed ? REFUSE_CHANGED : REFUSE_REVOKE);
		goto out;
	}
	struct store_cmd t =
	    attestation_cmd(qc->host, TRUST_ATTEST_ADMITTED, NULL, adm->ek_fp, measurement);
	attestation_set_key(&t, adm->tls_fp);
	STORE_CMD_ROW(&t, struct trust_attestation)->reset_count = q.reset_count;
	STORE_CMD_ROW(&t, struct trust_attestation)->restart_count = q.restart_count;
	struct store_cmd upd = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = wall_ms()};
	*STORE_CMD_ROW(&upd, struct trust_admission) = *adm;
	bool changed = strcmp(adm->measurement, measurement) != 0;
	snprintf(STORE_CMD_ROW(&upd, struct trust_admission)->measurement,
	         sizeof(STORE_CMD_ROW(&upd, struct trust_admission)->measurement), "%s",
	         measurement);
	if (attest_commit(a, qc->host, "re-attested", &t, changed ? &upd : NULL, NULL) < 0)
		log_warn("trust: cannot commit the re-attestation of %s", qc->host);
out:
	free(qc);
	attest_unref(a);
}

void attest_reattest(struct attest *a, const char *host)
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
	json_t *args = json_pack("{s:o}", "nonce", attest_hex_json(qc->nonce, sizeof(qc->nonce)));
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
	attest_unref(a);
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

void attest_lead(struct attest *a)
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
		/* Removed from the cluster: should it join again (its state
		 * deleted), it attests again before it is heard as admitted. */
		if (!store_member_find_name(st, adm->host)) {
			attest_refuse(a, adm->host, "removed from the cluster", adm->ek_fp,
			              adm->measurement, REFUSE_REVOKE);
			continue;
		}
		if (!attest_is_trusted(st, adm->measurement)) {
			char why[STORE_REASON_MAX];
			snprintf(why, sizeof(why), "measurement %.16s... is no longer trusted",
			         adm->measurement);
			attest_refuse(a, adm->host, why, adm->ek_fp, adm->measurement,
			              REFUSE_REVOKE);
			continue;
		}
		if (now >= t->time_ms + a->o.reattest_ms)
			attest_reattest(a, adm->host);
	}
}
