/* Attestation, the module's frame: the life of struct attest (its
 * references, the timer that drives both sides, opening and closing) and
 * the host's status. The join protocol is in attest-leader.c (the leader's
 * side) and attest-host.c (this host's side), re-attestation in
 * attest-reattest.c, the checks of the messages in attest-check.c. */
#include "attest.h"

#include <stdlib.h>
#include <string.h>

#include "api/tls.h"
#include "lib/clock.h"
#include "trust/attest-internal.h"

void attest_unref(struct attest *a)
{
	if (--a->refs > 0)
		return;
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		trust_blob_done(&a->sessions[i].ak_public);
	trust_blob_done(&a->ek_cert);
	trust_blob_done(&a->ek_public);
	trust_blob_done(&a->ak_public);
	trust_tpm_close(a->tpm);
	json_decref(a->tls_spki);
	free(a);
}

static void tick(uv_timer_t *timer)
{
	struct attest *a = timer->data;
	if (!a->joining)
		attest_watch_tpm(a);
	/* The leader first: a new cluster's creator seeds the trusted
	 * measurements before it attests to itself. Verifying others needs
	 * no TPM. */
	if (store_is_leader(a->store))
		attest_lead(a);
	const struct store_state *st = store_state(a->store);
	/* A replica that still shows this host admitted may only have missed
	 * its revocation: the leader refuses a revoked key's Raft at once, and
	 * one admitted again has no admission to be heard by until it attests.
	 * Such a member hears no leader while the others name one (they answer
	 * store.hello whoever asks): it attests again, and hears why not if it
	 * may not. */
	bool cut = store_leader_id(a->store) == 0 && store_heard_leader(a->store)[0];
	if (!cut)
		a->cut_since_ms = 0;
	else if (!a->cut_since_ms)
		a->cut_since_ms = mono_ms();
	bool cut_off = a->cut_since_ms && mono_ms() - a->cut_since_ms >= CUT_OFF_MS;
	if (a->tpm && !a->joining && (a->fresh || cut_off || !attest_admitted(a, st)) &&
	    mono_ms() >= a->next_try_ms)
		attest_join(a);
}

const char *attest_measurement(const struct attest *a)
{
	return a->measurement;
}

json_t *attest_status(const struct attest *a)
{
	const struct store_state *st = store_state(a->store);
	return json_pack("{s:s, s:i, s:s, s:s, s:s, s:s?, s:b, s:I, s:I, s:s?}", "tcti", a->o.tcti,
	                 "pcr", (int)a->o.pcr, "measurement", a->measurement, "ek_fp", a->ek_fp,
	                 "ak_fp", a->ak_fp, "tls_fp", a->tls_fp[0] ? a->tls_fp : NULL, "admitted",
	                 attest_admitted(a, st), "reset_count", (json_int_t)a->reset_count,
	                 "admitted_ms", (json_int_t)a->admitted_ms, "last_error",
	                 a->last_error[0] ? a->last_error : NULL);
}

int attest_open(uv_loop_t *loop, const struct attest_options *o, const char *host,
                const char *binary, const char *config_text, const char *state_dir,
                struct store *store, struct attest **ret_attest, char **ret_error)
{
	struct attest *a = calloc(1, sizeof(*a));
	if (!a)
		return error_set(ret_error, -ENOMEM, "out of memory");
	a->loop = loop;
	a->o = *o;
	a->store = store;
	a->refs = 1;
	snprintf(a->host, sizeof(a->host), "%s", host);
	snprintf(a->state_dir, sizeof(a->state_dir), "%s", state_dir);
	const struct ctl_tls *tls = ctl_tls_default();
	if (tls) {
		size_t len;
		const uint8_t *spki = ctl_tls_spki(tls, &len);
		snprintf(a->tls_fp, sizeof(a->tls_fp), "%s", ctl_tls_fingerprint(tls));
		a->tls_spki = attest_hex_json(spki, len);
	}
	int r = attest_open_tpm(a, binary, config_text, ret_error);
	if (r < 0) {
		attest_unref(a);
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
	attest_unref(h->data);
}

void attest_close(struct attest *a)
{
	if (!a)
		return;
	a->closing = true;
	uv_close((uv_handle_t *)&a->timer, timer_closed);
}
