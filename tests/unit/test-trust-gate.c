/* Which TLS keys the agents hear (src/trust/gate.c), on states built from
 * commands: a key no admission names, an admitted key, one whose admission
 * is being revoked or is gone, a Raft id that is not the key's host's, and
 * a cluster without attestation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/tables.h"
#include "tables-all.h"
#include "trust/gate.h"
#include "trust/tables.h"

#define KEY_H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define KEY_H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define KEY_X  "9999999999999999999999999999999999999999999999999999999999999999"

static uint64_t now = 1000;

static void apply(struct store_state *s, struct store_cmd cmd)
{
	struct store_result res;
	cmd.time_ms = ++now;
	assert_int_equal(store_state_apply(s, &cmd, &res), 0);
	if (!res.applied)
		fail_msg("rejected: %s", res.reason);
}

static void member(struct store_state *s, uint64_t id, const char *name)
{
	struct store_cmd c = {.table = STORE_MEMBERS, .op = STORE_PUT};
	struct store_member *m = STORE_CMD_ROW(&c, struct store_member);
	m->id = id;
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->address, sizeof(m->address), "10.77.0.%u:7700", (unsigned)id);
	snprintf(m->peer, sizeof(m->peer), "10.77.0.%u:7701", (unsigned)id);
	snprintf(m->raft_version, sizeof(m->raft_version), "test");
	apply(s, c);
}

static void admit(struct store_state *s, const char *host, const char *key)
{
	struct store_cmd c = {.table = TRUST_ADMISSIONS, .op = STORE_PUT};
	struct trust_admission *a = STORE_CMD_ROW(&c, struct trust_admission);
	snprintf(a->host, sizeof(a->host), "%s", host);
	snprintf(a->tls_fp, sizeof(a->tls_fp), "%s", key);
	apply(s, c);
}

static void attestation(struct store_state *s, const char *host, enum trust_attest_state st)
{
	struct store_cmd c = {.table = TRUST_ATTESTATIONS, .op = STORE_PUT};
	struct trust_attestation *t = STORE_CMD_ROW(&c, struct trust_attestation);
	snprintf(t->host, sizeof(t->host), "%s", host);
	t->state = (uint8_t)st;
	apply(s, c);
}

static struct store_state *cluster(void)
{
	struct store_state *s;
	assert_int_equal(store_state_new(&s), 0);
	member(s, 1, "h1");
	member(s, 2, "h2");
	admit(s, "h1", KEY_H1);
	attestation(s, "h1", TRUST_ATTEST_ADMITTED);
	admit(s, "h2", KEY_H2);
	attestation(s, "h2", TRUST_ATTEST_ADMITTED);
	return s;
}

/* Asks the gate about a call to @dialled (NULL: a request to a server);
 * returns its verdict, checks the host it names. */
static int check_call_ca(struct store_state *s, bool attesting, const char *key, enum ctl_tls_ca ca,
                         const char *cmd, const char *dialled, const char *host, const char *why)
{
	char got[STORE_NAME_MAX] = "junk", *error = NULL;
	int r = trust_key_check(s, attesting, key, ca, cmd, dialled, got, sizeof(got), &error);
	assert_string_equal(got, host);
	if (r < 0) {
		assert_non_null(error);
		if (!strstr(error, why))
			fail_msg("\"%s\" does not say \"%s\"", error, why);
	}
	free(error);
	return r;
}

static int check_call(struct store_state *s, bool attesting, const char *key, const char *cmd,
                      const char *dialled, const char *host, const char *why)
{
	return check_call_ca(s, attesting, key, CTL_TLS_CA_NONE, cmd, dialled, host, why);
}

static int check(struct store_state *s, bool attesting, const char *key, const char *cmd,
                 const char *host, const char *why)
{
	return check_call(s, attesting, key, cmd, NULL, host, why);
}

/* A joining host (no member known) calls only peers the network's CA
 * certified, where there is a CA; a member judges by admissions, and a
 * network without a CA by the key as before. */
static void test_a_joining_host_calls_only_certified_peers(void **state)
{
	(void)state;
	struct store_state *empty;
	assert_int_equal(store_state_new(&empty), 0);
	const char *seed = "10.77.0.1:7701";
	assert_int_equal(check_call_ca(empty, true, KEY_X, CTL_TLS_CA_NOT_SIGNED, "store.join",
	                               seed, "", "a certificate the network's CA did not sign"),
	                 -EACCES);
	assert_int_equal(
	    check_call_ca(empty, true, KEY_X, CTL_TLS_CA_SIGNED, "store.join", seed, "", NULL), 0);
	assert_int_equal(
	    check_call_ca(empty, true, KEY_X, CTL_TLS_CA_NONE, "store.join", seed, "", NULL), 0);
	/* Without attestation there is nothing to join into: as before. */
	assert_int_equal(
	    check_call_ca(empty, false, KEY_X, CTL_TLS_CA_NOT_SIGNED, "store.join", seed, "", NULL),
	    0);
	/* A request to this host's server is no call of its own. */
	assert_int_equal(
	    check_call_ca(empty, true, KEY_X, CTL_TLS_CA_NOT_SIGNED, "store.join", NULL, "", NULL),
	    0);
	store_state_free(empty);
	/* A member judges by admissions: an admitted key whose certificate
	 * is another CA's is still heard. */
	struct store_state *s = cluster();
	assert_int_equal(check_call_ca(s, true, KEY_H1, CTL_TLS_CA_NOT_SIGNED, "store.propose",
	                               seed, "h1", NULL),
	                 0);
	store_state_free(s);
}

/* A call goes to the host at the address dialled: an admitted host that
 * answers at another member's peer address (it took the address, or sits
 * on the way) is not spoken with; at its own address, or one that is no
 * member's (a seed before the join), its key is heard. */
static void test_a_call_hears_only_the_host_it_dialled(void **state)
{
	(void)state;
	struct store_state *s = cluster();
	assert_int_equal(check_call(s, true, KEY_H1, "store.propose", "10.77.0.1:7701", "h1", NULL),
	                 0);
	assert_int_equal(check_call(s, true, KEY_H2, "store.propose", "10.77.0.1:7701", "",
	                            "10.77.0.1:7701 is h1's peer address, but the peer there "
	                            "showed h2's TLS key"),
	                 -EACCES);
	assert_int_equal(check_call(s, true, KEY_H2, "store.join", "10.77.0.9:7701", "h2", NULL),
	                 0);
	/* A stranger's key at a member's address passes only for joining, as
	 * anywhere. */
	assert_int_equal(check_call(s, true, KEY_X, "store.propose", "10.77.0.1:7701", "",
	                            "is no admitted host's"),
	                 -EACCES);
	store_state_free(s);
}

static void test_admitted_key_is_heard(void **state)
{
	struct store_state *s = cluster();
	assert_int_equal(check(s, true, KEY_H1, "store.propose", "h1", NULL), 0);
	assert_int_equal(check(s, true, KEY_H2, "trust.quote", "h2", NULL), 0);
	store_state_free(s);
}

static void test_unknown_key_only_joins(void **state)
{
	struct store_state *s = cluster();
	const char *join[] = {"store.hello", "store.join", "trust.challenge", "trust.prove"};
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(check(s, true, KEY_X, join[i], "", NULL), 0);
	const char *other[] = {"store.propose", "trust.quote", "store.reset", "switch.local", ""};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(check(s, true, KEY_X, other[i], "", "is no admitted host's"),
		                 -EACCES);
	/* An empty fingerprint (no key at all) is no admitted host's either,
	 * even if an admission has none (one made before encoding 5). */
	admit(s, "h3", "");
	assert_int_equal(check(s, true, "", "store.propose", "", "is no admitted host's"), -EACCES);
	store_state_free(s);
}

static void test_revoked_and_removed_keys_are_not_heard(void **state)
{
	struct store_state *s = cluster();
	/* The admin's revocation commits the attestation first: from then on
	 * the key is refused, before the admission is gone. */
	attestation(s, "h2", TRUST_ATTEST_REVOKED);
	assert_int_equal(check(s, true, KEY_H2, "store.propose", "", "being revoked"), -EACCES);
	assert_int_equal(check(s, true, KEY_H2, "trust.challenge", "", NULL), 0);
	/* A refusal (a measurement no longer trusted) likewise. */
	attestation(s, "h1", TRUST_ATTEST_REFUSED);
	assert_int_equal(check(s, true, KEY_H1, "store.propose", "", "being revoked"), -EACCES);
	/* The admission deleted: the key is a stranger's. */
	struct store_cmd del = {.table = TRUST_ADMISSIONS, .op = STORE_DELETE};
	snprintf(STORE_CMD_ROW(&del, struct trust_admission)->host, STORE_NAME_MAX, "h1");
	apply(s, del);
	assert_int_equal(check(s, true, KEY_H1, "store.propose", "", "is no admitted host's"),
	                 -EACCES);
	store_state_free(s);
}

static void test_without_attestation_every_key_is_heard(void **state)
{
	struct store_state *s = cluster();
	assert_int_equal(check(s, false, KEY_X, "store.propose", "", NULL), 0);
	/* A key an admission names still names its host. */
	assert_int_equal(check(s, false, KEY_H2, "store.propose", "h2", NULL), 0);
	store_state_free(s);
}

static void attestation_key(struct store_state *s, const char *host, enum trust_attest_state st,
                            const char *key)
{
	struct store_cmd c = {.table = TRUST_ATTESTATIONS, .op = STORE_PUT};
	struct trust_attestation *t = STORE_CMD_ROW(&c, struct trust_attestation);
	snprintf(t->host, sizeof(t->host), "%s", host);
	t->state = (uint8_t)st;
	snprintf(t->tls_fp, sizeof(t->tls_fp), "%s", key);
	apply(s, c);
}

static int raft_as(struct store_state *s, bool attesting, const char *key, uint64_t id,
                   const char *why)
{
	char *error = NULL;
	int r = trust_raft_key_check(s, attesting, NULL, key, id, &error);
	if (r < 0 && !strstr(error, why))
		fail_msg("\"%s\" does not say \"%s\"", error, why);
	if (r == 0 && why)
		fail_msg("passed, expected \"%s\"", why);
	free(error);
	return r;
}

static int raft(struct store_state *s, const char *key, uint64_t id, const char *why)
{
	return raft_as(s, true, key, id, why);
}

static void test_raft_id_must_be_the_keys(void **state)
{
	struct store_state *s = cluster();
	assert_int_equal(raft(s, KEY_H1, 1, NULL), 0);
	assert_int_equal(raft(s, KEY_H2, 2, NULL), 0);
	/* h2's key claiming h1's place. */
	assert_int_equal(raft(s, KEY_H2, 1, "admitted as h2, which is server 2"), -EACCES);
	/* A key of no host claiming an admitted host's place. */
	assert_int_equal(raft(s, KEY_X, 2, "h2 was admitted with another TLS key"), -EACCES);
	/* A key of no host for a server no host was admitted as: a host that
	 * joined (a spare member) replicates nothing before it is admitted,
	 * unless the cluster admits without attestation. */
	member(s, 3, "h3");
	assert_int_equal(raft(s, KEY_X, 3, "was never admitted"), -EACCES);
	assert_int_equal(raft_as(s, false, KEY_X, 3, NULL), 0);
	assert_int_equal(raft_as(s, false, KEY_X, 2, "h2 was admitted with another TLS key"),
	                 -EACCES);
	/* Admitted, it replicates as its id. */
	admit(s, "h3", KEY_X);
	assert_int_equal(raft(s, KEY_X, 3, NULL), 0);
	/* An admitted host that is no member (removed from the cluster). */
	admit(s, "h7", "7777777777777777777777777777777777777777777777777777777777777777");
	assert_int_equal(raft(s, "7777777777777777777777777777777777777777777777777777777777777777",
	                      7, "which is no member"),
	                 -EACCES);
	/* Revoked by the admin: the attestation keeps the key, and refuses it
	 * once the admission is gone too. */
	attestation_key(s, "h2", TRUST_ATTEST_REVOKED, KEY_H2);
	assert_int_equal(raft(s, KEY_H2, 2, "revoked by the admin"), -EACCES);
	struct store_cmd del = {.table = TRUST_ADMISSIONS, .op = STORE_DELETE};
	snprintf(STORE_CMD_ROW(&del, struct trust_admission)->host, STORE_NAME_MAX, "h2");
	apply(s, del);
	assert_int_equal(raft(s, KEY_H2, 2, "revoked by the admin"), -EACCES);
	/* Refused for its measurement (not revoked): it keeps replicating. */
	attestation_key(s, "h1", TRUST_ATTEST_REFUSED, KEY_H1);
	del = (struct store_cmd){.table = TRUST_ADMISSIONS, .op = STORE_DELETE};
	snprintf(STORE_CMD_ROW(&del, struct trust_admission)->host, STORE_NAME_MAX, "h1");
	apply(s, del);
	assert_int_equal(raft(s, KEY_H1, 1, NULL), 0);
	store_state_free(s);
}

static void unadmit(struct store_state *s, const char *host)
{
	struct store_cmd del = {.table = TRUST_ADMISSIONS, .op = STORE_DELETE};
	snprintf(STORE_CMD_ROW(&del, struct trust_admission)->host, STORE_NAME_MAX, "%s", host);
	apply(s, del);
}

/* A host whose own quote showed a new, untrusted measurement speaks no
 * Raft while such hosts are fewer than half of the voters; when most
 * voters are (an upgrade before its binary was trusted), all of them
 * still do, so that the cluster keeps a leader to trust it on. */
static void test_a_changed_host_speaks_no_raft_while_few(void **state)
{
	(void)state;
	struct store_state *s = cluster();
	member(s, 3, "h3");
	admit(s, "h3", KEY_X);
	attestation_key(s, "h3", TRUST_ATTEST_ADMITTED, KEY_X);
	for (unsigned id = 1; id <= 3; id++) {
		struct store_cmd c = {.table = STORE_MEMBERS, .op = STORE_PUT};
		*STORE_CMD_ROW(&c, struct store_member) = *store_member_find(s, id);
		STORE_CMD_ROW(&c, struct store_member)->role = STORE_ROLE_VOTER;
		apply(s, c);
	}
	attestation_key(s, "h3", TRUST_ATTEST_CHANGED, KEY_X);
	unadmit(s, "h3");
	assert_int_equal(raft(s, KEY_X, 3, "whose measurement changed"), -EACCES);
	assert_int_equal(raft(s, KEY_H1, 1, NULL), 0);
	/* Merely refused (its measurement no longer trusted): it replicates. */
	attestation_key(s, "h3", TRUST_ATTEST_REFUSED, KEY_X);
	assert_int_equal(raft(s, KEY_X, 3, NULL), 0);
	/* Two of three voters changed: none is cut off. */
	attestation_key(s, "h3", TRUST_ATTEST_CHANGED, KEY_X);
	attestation_key(s, "h2", TRUST_ATTEST_CHANGED, KEY_H2);
	unadmit(s, "h2");
	assert_int_equal(raft(s, KEY_X, 3, NULL), 0);
	assert_int_equal(raft(s, KEY_H2, 2, NULL), 0);
	/* Its join admits it again. */
	attestation_key(s, "h2", TRUST_ATTEST_ADMITTED, KEY_H2);
	admit(s, "h2", KEY_H2);
	assert_int_equal(raft(s, KEY_X, 3, "whose measurement changed"), -EACCES);
	store_state_free(s);
}

/* A replica that knows no member (a host joining, its store empty) hears
 * the cluster's Raft from any key; one that knows members refuses a key
 * never admitted, even when no admission is left. */
static void test_empty_replica_judges_no_raft_key(void **state)
{
	(void)state;
	struct store_state *s;
	assert_int_equal(store_state_new(&s), 0);
	assert_int_equal(raft(s, KEY_H1, 1, NULL), 0);
	/* Joined through a leader that named its key: that key only. */
	char *error = NULL;
	assert_int_equal(trust_raft_key_check(s, true, KEY_H1, KEY_H1, 1, &error), 0);
	assert_int_equal(trust_raft_key_check(s, true, KEY_H1, KEY_X, 1, &error), -EACCES);
	assert_non_null(strstr(error, "not the key of the leader this host joined through"));
	free(error);
	assert_int_equal(trust_raft_key_check(s, false, KEY_H1, KEY_X, 1, &error), 0);
	member(s, 1, "h1");
	assert_int_equal(raft(s, KEY_X, 2, "was never admitted"), -EACCES);
	admit(s, "h1", KEY_H1);
	assert_int_equal(raft(s, KEY_H1, 1, NULL), 0);
	assert_int_equal(raft(s, KEY_X, 2, "was never admitted"), -EACCES);
	store_state_free(s);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_admitted_key_is_heard),
	    cmocka_unit_test(test_a_call_hears_only_the_host_it_dialled),
	    cmocka_unit_test(test_a_joining_host_calls_only_certified_peers),
	    cmocka_unit_test(test_unknown_key_only_joins),
	    cmocka_unit_test(test_revoked_and_removed_keys_are_not_heard),
	    cmocka_unit_test(test_without_attestation_every_key_is_heard),
	    cmocka_unit_test(test_raft_id_must_be_the_keys),
	    cmocka_unit_test(test_a_changed_host_speaks_no_raft_while_few),
	    cmocka_unit_test(test_empty_replica_judges_no_raft_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
