/* Which TLS keys the agents hear: see gate.h. */
#include "gate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "trust/tables.h"

/* What a key that is no admitted host's may send, or be sent: the join
 * protocol (docs/trust.md) — joining the store, then attesting. */
static const char *const joining_commands[] = {"store.hello", "store.join", "trust.challenge",
                                               "trust.prove", NULL};

/* The member whose peer API is at @address, or NULL. */
static const struct store_member *member_at(const struct store_state *st, const char *address)
{
	for (size_t i = 0; address && i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (strcmp(m->peer, address) == 0)
			return m;
	}
	return NULL;
}

int trust_key_check(const struct store_state *st, bool attesting, const char *fp,
                    enum ctl_tls_ca ca, const char *cmd, const char *dialled, char *ret_host,
                    size_t host_size, char **ret_error)
{
	const struct trust_admission *adm = trust_admission_by_key(st, fp);
	const struct trust_attestation *att = adm ? trust_attestation_find(st, adm->host) : NULL;
	if (host_size)
		ret_host[0] = '\0';
	/* A joining host knows no member, so no admission to judge a key by:
	 * where the network has a CA, it calls only peers the CA certified, so
	 * that whoever answers its join (and names the leader's key) is one
	 * of the network's hosts, not a machine on its wire. */
	if (attesting && dialled && ca == CTL_TLS_CA_NOT_SIGNED &&
	    store_count(st, STORE_MEMBERS) == 0)
		return error_set(ret_error, -EACCES,
		                 "%s: the peer at %s showed a certificate the network's CA did not "
		                 "sign (TLS key %.16s...); a joining host speaks only with the "
		                 "network's hosts",
		                 cmd, dialled, fp);
	if (adm && (!att || att->state == TRUST_ATTEST_ADMITTED)) {
		const struct store_member *m = member_at(st, dialled);
		if (m && strcmp(m->name, adm->host) != 0)
			return error_set(
			    ret_error, -EACCES,
			    "%s: %s is %s's peer address, but the peer there showed %s's "
			    "TLS key",
			    cmd, dialled, m->name, adm->host);
		snprintf(ret_host, host_size, "%s", adm->host);
		return 0;
	}
	if (!attesting)
		return 0;
	for (size_t i = 0; joining_commands[i]; i++)
		if (strcmp(cmd, joining_commands[i]) == 0)
			return 0;
	return error_set(ret_error, -EACCES,
	                 "%s: TLS key %.16s... is no admitted host's%s; before admission only "
	                 "store.hello, store.join, trust.challenge and trust.prove are heard",
	                 cmd, fp, adm ? " (its admission is being revoked)" : "");
}

/* The attestation row that records @fp as its host's key, or NULL. */
static const struct trust_attestation *attestation_by_key(const struct store_state *st,
                                                          const char *fp)
{
	for (size_t i = 0; fp[0] && i < store_count(st, TRUST_ATTESTATIONS); i++) {
		const struct trust_attestation *t = store_row(st, TRUST_ATTESTATIONS, i);
		if (strcmp(t->tls_fp, fp) == 0)
			return t;
	}
	return NULL;
}

/* Whether fewer than half of the voters are hosts whose measurement
 * changed: then those are cut off and the others keep a quorum. When most
 * voters changed (their binary upgraded before the admin trusted it),
 * cutting them would leave no leader to trust it on, so none is cut. */
static bool changed_are_few(const struct store_state *st)
{
	unsigned voters = 0, changed = 0;
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (m->role != STORE_ROLE_VOTER)
			continue;
		voters++;
		const struct trust_attestation *t = trust_attestation_find(st, m->name);
		changed += t && t->state == TRUST_ATTEST_CHANGED;
	}
	return 2 * changed < voters;
}

int trust_raft_key_check(const struct store_state *st, bool attesting, const char *joined_key,
                         const char *fp, uint64_t raft_id, char **ret_error)
{
	char host[STORE_NAME_MAX], *why = NULL;
	int r =
	    trust_key_check(st, true, fp, CTL_TLS_CA_NONE, "raft", NULL, host, sizeof(host), &why);
	free(why);
	const struct trust_attestation *t = r == 0 ? NULL : attestation_by_key(st, fp);
	if (t && t->state == TRUST_ATTEST_REVOKED)
		return error_set(ret_error, -EACCES,
		                 "Raft as server %" PRIu64
		                 ": its TLS key is %s's, revoked by the admin",
		                 raft_id, t->host);
	if (t && t->state == TRUST_ATTEST_CHANGED && changed_are_few(st))
		return error_set(ret_error, -EACCES,
		                 "Raft as server %" PRIu64
		                 ": its TLS key is %s's, whose measurement changed to one that is "
		                 "not trusted",
		                 raft_id, t->host);
	if (r == 0 || t) {
		/* A key some admission proved: its host's server id only. */
		const char *owner = r == 0 ? host : t->host;
		const struct store_member *m = store_member_find_name(st, owner);
		if (!m)
			return error_set(ret_error, -EACCES,
			                 "Raft as server %" PRIu64
			                 ": its TLS key is %s's, which is no member",
			                 raft_id, owner);
		if (m->id != raft_id)
			return error_set(
			    ret_error, -EACCES,
			    "Raft as server %" PRIu64
			    ": its TLS key was admitted as %s, which is server %" PRIu64,
			    raft_id, owner, m->id);
		return 0;
	}
	const struct store_member *m = store_member_find(st, raft_id);
	const struct trust_admission *adm = m ? trust_admission_find(st, m->name) : NULL;
	if (adm && adm->tls_fp[0])
		return error_set(ret_error, -EACCES,
		                 "Raft as server %" PRIu64
		                 ": %s was admitted with another TLS key (%.16s...)",
		                 raft_id, m->name, adm->tls_fp);
	/* A replica that knows no member yet (a host joining: its store is
	 * still empty) has only the key of the leader that took its join to
	 * go by, if that leader named one. One that knows members but no
	 * admission (every host refused at once) still refuses strangers. */
	if (attesting && store_count(st, STORE_MEMBERS) == 0 && joined_key && joined_key[0] &&
	    strcmp(fp, joined_key) != 0)
		return error_set(ret_error, -EACCES,
		                 "Raft as server %" PRIu64
		                 ": TLS key %.16s... is not the key of the "
		                 "leader this host joined through (%.16s...)",
		                 raft_id, fp, joined_key);
	if (attesting && store_count(st, STORE_MEMBERS) > 0)
		return error_set(ret_error, -EACCES,
		                 "Raft as server %" PRIu64
		                 ": TLS key %.16s... was never admitted; a "
		                 "host replicates the store once it is admitted",
		                 raft_id, fp);
	return 0;
}
