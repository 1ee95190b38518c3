/* The trust module against real software TPMs: two swtpm instances, each
 * provisioned with an EK certificate from its own local CA. Quotes,
 * credential activation and EK certificates are checked for what must be
 * accepted and for each way they must be refused. Skipped (77) without
 * swtpm. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/hex.h"
#include "swtpm-lab.h"
#include "trust/trust.h"

#define PCR 16

struct host {
	struct swtpm sw;
	char ca_dir[LAB_PATH];
	struct trust_tpm *tpm;
	struct trust_blob ek_cert, ek_public, ak_public;
	uint8_t ak_name[2 + TRUST_DIGEST_LEN];
};

static char root[] = "/tmp/ettm-test-trust-XXXXXX";
static bool have_root;
static struct host hosts[2];
/* The last failure's message; ERR resets it and hands it to a call. */
static char *err;
#define ERR (free(err), err = NULL, &err)

static void host_open(struct host *h)
{
	int r = trust_tpm_open(h->sw.tcti, &h->tpm, ERR);
	if (r < 0)
		fail_msg("trust_tpm_open %s: %d %s", h->sw.tcti, r, err);
}

static void host_close(struct host *h)
{
	trust_tpm_close(h->tpm);
	h->tpm = NULL;
}

static int host_setup(struct host *h, const char *name, const char *ca)
{
	int r = lab_ca(root, ca, h->ca_dir);
	if (r == 0)
		r = lab_tpm_provision(root, name, ca, &h->sw);
	if (r == 0)
		r = lab_tpm_start(&h->sw);
	if (r < 0)
		return r;
	r = trust_tpm_open(h->sw.tcti, &h->tpm, ERR);
	if (r == 0)
		r = trust_tpm_ek(h->tpm, &h->ek_cert, &h->ek_public, ERR);
	if (r == 0)
		r = trust_tpm_ak(h->tpm, &h->ak_public, ERR);
	if (r == 0)
		r = trust_ak_check(&h->ak_public, (char[TRUST_FP_LEN]){0}, h->ak_name, ERR);
	if (r < 0)
		fprintf(stderr, "%s: %d %s\n", name, r, err);
	return r;
}

static void cleanup(void)
{
	for (size_t i = 0; i < 2; i++) {
		host_close(&hosts[i]);
		lab_tpm_stop(&hosts[i].sw);
		trust_blob_done(&hosts[i].ek_cert);
		trust_blob_done(&hosts[i].ek_public);
		trust_blob_done(&hosts[i].ak_public);
	}
	if (have_root)
		lab_rm_rf(root);
	have_root = false;
}

static void random_nonce(uint8_t nonce[TRUST_NONCE_LEN])
{
	for (size_t i = 0; i < TRUST_NONCE_LEN; i++)
		nonce[i] = (uint8_t)random();
}

/* A fresh measurement of PCR 16 on @h and a quote of it. */
struct quoted {
	uint8_t nonce[TRUST_NONCE_LEN];
	uint8_t value[TRUST_DIGEST_LEN];
	struct trust_blob attest, sig;
};

static void quote(struct host *h, struct quoted *q)
{
	uint8_t digests[2][TRUST_DIGEST_LEN];
	trust_sha256("ettmd", 5, digests[0]);
	trust_sha256("ettmd.conf", 10, digests[1]);
	assert_int_equal(trust_tpm_measure(h->tpm, PCR, digests, 2, ERR), 0);
	trust_pcr_replay(digests, 2, q->value);
	random_nonce(q->nonce);
	int r = trust_tpm_quote(h->tpm, PCR, q->nonce, sizeof(q->nonce), &q->attest, &q->sig, ERR);
	if (r < 0)
		fail_msg("trust_tpm_quote: %d %s", r, err);
}

static void quoted_done(struct quoted *q)
{
	trust_blob_done(&q->attest);
	trust_blob_done(&q->sig);
}

static int check(const struct trust_blob *ak, const struct quoted *q,
                 const struct trust_blob *attest, const struct trust_blob *sig,
                 struct trust_quote *ret)
{
	return trust_quote_check(ak, attest, sig, q->nonce, sizeof(q->nonce), PCR, q->value, ret,
	                         ERR);
}

static void test_quote_good(void **state)
{
	struct host *h = &hosts[0];
	struct quoted q;
	quote(h, &q);
	struct trust_quote out;
	int r = check(&h->ak_public, &q, &q.attest, &q.sig, &out);
	if (r < 0)
		fail_msg("good quote refused: %d %s", r, err);
	assert_memory_equal(out.pcr_value, q.value, TRUST_DIGEST_LEN);
	uint32_t reset, restart;
	assert_int_equal(trust_tpm_counters(h->tpm, &reset, &restart, ERR), 0);
	assert_int_equal(out.reset_count, reset);
	assert_int_equal(out.restart_count, restart);
	assert_true(out.clock_ms > 0);
	quoted_done(&q);
}

static void test_quote_wrong_nonce(void **state)
{
	struct host *h = &hosts[0];
	struct quoted q;
	quote(h, &q);
	q.nonce[0] ^= 1;
	assert_int_equal(check(&h->ak_public, &q, &q.attest, &q.sig, NULL), -EACCES);
	assert_non_null(strstr(err, "nonce"));
	quoted_done(&q);
}

static void test_quote_wrong_value(void **state)
{
	struct host *h = &hosts[0];
	struct quoted q;
	quote(h, &q);
	q.value[31] ^= 0x80;
	assert_int_equal(check(&h->ak_public, &q, &q.attest, &q.sig, NULL), -EACCES);
	assert_non_null(strstr(err, "pcrDigest"));
	/* Another PCR than the one quoted. */
	q.value[31] ^= 0x80;
	assert_int_equal(trust_quote_check(&h->ak_public, &q.attest, &q.sig, q.nonce,
	                                   sizeof(q.nonce), 23, q.value, NULL, ERR),
	                 -EACCES);
	quoted_done(&q);
}

static void test_quote_wrong_key(void **state)
{
	struct quoted q;
	quote(&hosts[0], &q);
	assert_int_equal(check(&hosts[1].ak_public, &q, &q.attest, &q.sig, NULL), -EACCES);
	assert_non_null(strstr(err, "signature"));
	quoted_done(&q);
}

/* Every single flipped byte of the attest or the signature is refused. */
static void test_quote_flipped(void **state)
{
	struct host *h = &hosts[0];
	struct quoted q;
	quote(h, &q);
	for (size_t i = 0; i < q.attest.len; i++) {
		q.attest.data[i] ^= 0x01;
		if (check(&h->ak_public, &q, &q.attest, &q.sig, NULL) == 0)
			fail_msg("attest with byte %zu flipped accepted", i);
		q.attest.data[i] ^= 0x01;
	}
	for (size_t i = 0; i < q.sig.len; i++) {
		q.sig.data[i] ^= 0x40;
		if (check(&h->ak_public, &q, &q.attest, &q.sig, NULL) == 0)
			fail_msg("signature with byte %zu flipped accepted", i);
		q.sig.data[i] ^= 0x40;
	}
	assert_int_equal(check(&h->ak_public, &q, &q.attest, &q.sig, NULL), 0);
	quoted_done(&q);
}

static void test_quote_truncated(void **state)
{
	struct host *h = &hosts[0];
	struct quoted q;
	quote(h, &q);
	for (size_t len = 0; len < q.attest.len; len++) {
		struct trust_blob a = {q.attest.data, len};
		if (check(&h->ak_public, &q, &a, &q.sig, NULL) == 0)
			fail_msg("attest truncated to %zu bytes accepted", len);
	}
	struct trust_blob a = {q.attest.data, q.attest.len - 1};
	assert_int_equal(check(&h->ak_public, &q, &a, &q.sig, NULL), -EBADMSG);
	assert_non_null(strstr(err, "attest"));
	/* And one byte too many. */
	uint8_t *longer = malloc(q.attest.len + 1);
	memcpy(longer, q.attest.data, q.attest.len);
	longer[q.attest.len] = 0;
	a = (struct trust_blob){longer, q.attest.len + 1};
	assert_int_equal(check(&h->ak_public, &q, &a, &q.sig, NULL), -EBADMSG);
	free(longer);
	quoted_done(&q);
}

static void test_ek_good(void **state)
{
	for (size_t i = 0; i < 2; i++) {
		struct host *h = &hosts[i];
		char fp[TRUST_FP_LEN];
		int r = trust_ek_check(&h->ek_cert, &h->ek_public, h->ca_dir, fp, ERR);
		if (r < 0)
			fail_msg("EK of host %zu refused: %d %s", i, r, err);
		uint8_t d[TRUST_DIGEST_LEN];
		char want[TRUST_FP_LEN];
		trust_sha256(h->ek_cert.data, h->ek_cert.len, d);
		hex_encode(d, sizeof(d), want);
		assert_string_equal(fp, want);
	}
	/* A single PEM file holding the root and the intermediate. */
	char bundle[LAB_PATH + 16], cmd[4 * LAB_PATH];
	snprintf(bundle, sizeof(bundle), "%s/bundle.pem", root);
	snprintf(cmd, sizeof(cmd), "cat %s/swtpm-localca-rootca-cert.pem %s/issuercert.pem > %s",
	         hosts[0].ca_dir, hosts[0].ca_dir, bundle);
	assert_int_equal(system(cmd), 0);
	char fp[TRUST_FP_LEN];
	assert_int_equal(trust_ek_check(&hosts[0].ek_cert, &hosts[0].ek_public, bundle, fp, ERR),
	                 0);
}

static void test_ek_wrong_chain(void **state)
{
	char fp[TRUST_FP_LEN];
	assert_int_equal(
	    trust_ek_check(&hosts[0].ek_cert, &hosts[0].ek_public, hosts[1].ca_dir, fp, ERR),
	    -EACCES);
	assert_non_null(strstr(err, "EK certificate"));
	/* The intermediate alone is not a trust anchor. */
	char issuer[LAB_PATH + 16];
	snprintf(issuer, sizeof(issuer), "%s/issuercert.pem", hosts[0].ca_dir);
	assert_int_equal(trust_ek_check(&hosts[0].ek_cert, &hosts[0].ek_public, issuer, fp, ERR),
	                 -EACCES);
}

static void test_ek_wrong_public(void **state)
{
	char fp[TRUST_FP_LEN];
	assert_int_equal(
	    trust_ek_check(&hosts[0].ek_cert, &hosts[1].ek_public, hosts[0].ca_dir, fp, ERR),
	    -EACCES);
	assert_non_null(strstr(err, "EK public"));
	/* An AK is not the EK either. */
	assert_int_equal(
	    trust_ek_check(&hosts[0].ek_cert, &hosts[0].ak_public, hosts[0].ca_dir, fp, ERR),
	    -EACCES);
	/* A certificate with a byte changed no longer verifies or parses. */
	struct trust_blob c = hosts[0].ek_cert;
	uint8_t *copy = malloc(c.len);
	memcpy(copy, c.data, c.len);
	copy[c.len - 10] ^= 1; /* inside the signature */
	struct trust_blob bad = {copy, c.len};
	assert_int_not_equal(trust_ek_check(&bad, &hosts[0].ek_public, hosts[0].ca_dir, fp, ERR),
	                     0);
	free(copy);
}

static void test_credential(void **state)
{
	struct host *a = &hosts[0], *b = &hosts[1];
	const uint8_t secret[TRUST_DIGEST_LEN] = "the secret of a join, 32 bytes!";
	struct trust_blob cred, sec, plain;
	int r = trust_make_credential(&a->ek_public, a->ak_name, secret, sizeof(secret), &cred,
	                              &sec, ERR);
	if (r < 0)
		fail_msg("trust_make_credential: %d %s", r, err);
	r = trust_tpm_activate(a->tpm, &cred, &sec, &plain, ERR);
	if (r < 0)
		fail_msg("trust_tpm_activate: %d %s", r, err);
	assert_int_equal(plain.len, sizeof(secret));
	assert_memory_equal(plain.data, secret, sizeof(secret));
	trust_blob_done(&plain);

	/* Another TPM has neither the EK nor the AK it was made for. */
	assert_int_equal(trust_tpm_activate(b->tpm, &cred, &sec, &plain, ERR), -EACCES);
	trust_blob_done(&cred);
	trust_blob_done(&sec);

	/* The right EK, but the name of another TPM's AK. */
	assert_int_equal(
	    trust_make_credential(&a->ek_public, b->ak_name, secret, 16, &cred, &sec, ERR), 0);
	assert_int_equal(trust_tpm_activate(a->tpm, &cred, &sec, &plain, ERR), -EACCES);
	trust_blob_done(&cred);
	trust_blob_done(&sec);

	/* Nothing to seal, or too much. */
	assert_int_equal(
	    trust_make_credential(&a->ek_public, a->ak_name, secret, 0, &cred, &sec, ERR), -EINVAL);
	assert_int_equal(trust_make_credential(&a->ek_public, a->ak_name, (uint8_t[33]){0}, 33,
	                                       &cred, &sec, ERR),
	                 -EINVAL);
	/* An AK is no EK. */
	assert_int_equal(
	    trust_make_credential(&a->ak_public, a->ak_name, secret, 16, &cred, &sec, ERR),
	    -EACCES);
}

/* TPM2B_PUBLIC: size (2), type (2), nameAlg (2), objectAttributes (4,
 * big-endian) (TPM 2.0 Part 2, 12.2.4): bit 16 restricted, 17 decrypt. */
static void test_ak_attributes(void **state)
{
	struct trust_blob ak = hosts[0].ak_public;
	char fp[TRUST_FP_LEN];
	uint8_t name[2 + TRUST_DIGEST_LEN];
	assert_int_equal(trust_ak_check(&ak, fp, name, ERR), 0);
	assert_int_equal(name[0], 0x00);
	assert_int_equal(name[1], 0x0b);
	uint8_t *copy = malloc(ak.len);
	struct trust_blob bad = {copy, ak.len};

	memcpy(copy, ak.data, ak.len);
	copy[7] &= (uint8_t)~0x01; /* not restricted */
	assert_int_equal(trust_ak_check(&bad, fp, name, ERR), -EACCES);
	assert_non_null(strstr(err, "attributes"));

	memcpy(copy, ak.data, ak.len);
	copy[7] |= 0x02; /* decrypt too */
	assert_int_equal(trust_ak_check(&bad, fp, name, ERR), -EACCES);
	assert_non_null(strstr(err, "decrypt"));

	memcpy(copy, ak.data, ak.len);
	copy[9] &= (uint8_t)~0x02; /* not fixedTPM */
	assert_int_equal(trust_ak_check(&bad, fp, name, ERR), -EACCES);

	/* An EK: RSA, decrypt. */
	assert_int_equal(trust_ak_check(&hosts[0].ek_public, fp, name, ERR), -EACCES);
	free(copy);
	/* Truncated and too long. */
	struct trust_blob t = {ak.data, ak.len - 1};
	assert_int_equal(trust_ak_check(&t, fp, name, ERR), -EBADMSG);
}

static void test_measure_replay(void **state)
{
	struct host *h = &hosts[0];
	uint8_t digests[3][TRUST_DIGEST_LEN], want[TRUST_DIGEST_LEN], got[TRUST_DIGEST_LEN];
	for (size_t i = 0; i < 3; i++)
		trust_sha256(&i, sizeof(i), digests[i]);
	for (size_t n = 0; n <= 3; n++) {
		assert_int_equal(trust_tpm_measure(h->tpm, PCR, digests, n, ERR), 0);
		assert_int_equal(trust_tpm_pcr_read(h->tpm, PCR, got, ERR), 0);
		trust_pcr_replay(digests, n, want);
		assert_memory_equal(got, want, TRUST_DIGEST_LEN);
	}
	/* Order matters. */
	uint8_t swapped[2][TRUST_DIGEST_LEN];
	memcpy(swapped[0], digests[1], TRUST_DIGEST_LEN);
	memcpy(swapped[1], digests[0], TRUST_DIGEST_LEN);
	trust_pcr_replay(digests, 2, want);
	trust_pcr_replay(swapped, 2, got);
	assert_memory_not_equal(got, want, TRUST_DIGEST_LEN);
	/* PCR 0 is not resettable at locality 0. */
	assert_int_not_equal(trust_tpm_measure(h->tpm, 0, digests, 1, ERR), 0);
	assert_int_equal(trust_tpm_measure(h->tpm, 24, digests, 1, ERR), -EINVAL);
}

static void test_file_sha256(void **state)
{
	char path[LAB_PATH + 16];
	snprintf(path, sizeof(path), "%s/file", root);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("abc", f);
	fclose(f);
	uint8_t d[TRUST_DIGEST_LEN];
	char hex[TRUST_FP_LEN];
	assert_int_equal(trust_file_sha256(path, d), 0);
	hex_encode(d, sizeof(d), hex);
	/* FIPS 180-2, B.1. */
	assert_string_equal(hex,
	                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(trust_file_sha256("/nonexistent/ettm", d), -ENOENT);
}

static bool blob_eq(const struct trust_blob *a, const struct trust_blob *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* The AK is a function of the TPM: the same after the agent reopens the
 * TPM, and after the TPM itself restarts, which a quote then shows. */
static void test_reopen_restart(void **state)
{
	struct host *h = &hosts[0];
	struct trust_blob ak;
	uint32_t reset0, restart0, reset1, restart1;
	assert_int_equal(trust_tpm_counters(h->tpm, &reset0, &restart0, ERR), 0);

	host_close(h);
	host_open(h);
	assert_int_equal(trust_tpm_ak(h->tpm, &ak, ERR), 0);
	assert_true(blob_eq(&ak, &h->ak_public));
	trust_blob_done(&ak);

	host_close(h);
	lab_tpm_stop(&h->sw);
	assert_int_equal(lab_tpm_start(&h->sw), 0);
	host_open(h);
	assert_int_equal(trust_tpm_ak(h->tpm, &ak, ERR), 0);
	assert_true(blob_eq(&ak, &h->ak_public));
	trust_blob_done(&ak);
	assert_int_equal(trust_tpm_counters(h->tpm, &reset1, &restart1, ERR), 0);
	assert_true(reset1 > reset0);

	uint8_t zero[TRUST_DIGEST_LEN] = {0}, got[TRUST_DIGEST_LEN];
	assert_int_equal(trust_tpm_pcr_read(h->tpm, PCR, got, ERR), 0);
	assert_memory_equal(got, zero, TRUST_DIGEST_LEN);

	struct quoted q;
	quote(h, &q);
	struct trust_quote out;
	assert_int_equal(check(&h->ak_public, &q, &q.attest, &q.sig, &out), 0);
	assert_int_equal(out.reset_count, reset1);
	quoted_done(&q);
}

/* Quotes on @tcti until killed: an agent that dies by kill -9 somewhere in
 * its TPM work. */
static _Noreturn void quote_until_killed(const char *tcti)
{
	struct trust_tpm *t;
	char *e = NULL;
	if (trust_tpm_open(tcti, &t, &e) < 0)
		_exit(1);
	for (;;) {
		uint8_t nonce[TRUST_NONCE_LEN];
		struct trust_blob a, s;
		random_nonce(nonce);
		if (trust_tpm_quote(t, PCR, nonce, sizeof(nonce), &a, &s, &e) < 0)
			_exit(2);
		trust_blob_done(&a);
		trust_blob_done(&s);
	}
}

/* Ten agents killed by SIGKILL in the middle of their quotes (each kill
 * may leave an AK loaded), and one that leaves without closing: the next
 * one still opens the TPM and quotes, and a TPM holds only three loaded
 * objects. */
static void test_killed_agents_leak_nothing(void **state)
{
	struct host *h = &hosts[1];
	host_close(h);
	for (int i = 0; i < 10; i++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			quote_until_killed(h->sw.tcti);
		struct timespec ts = {0, (10 + random() % 40) * 1000000L};
		nanosleep(&ts, NULL);
		int status;
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* Killed, not failed: a child that could not quote exits. */
		assert_true(WIFSIGNALED(status));
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct trust_tpm *t;
		struct trust_blob ak;
		char *e = NULL;
		_exit(trust_tpm_open(h->sw.tcti, &t, &e) == 0 && trust_tpm_ak(t, &ak, &e) == 0 ? 0
		                                                                               : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	host_open(h);
	for (int i = 0; i < 5; i++) {
		struct quoted q;
		struct trust_quote out;
		quote(h, &q);
		assert_int_equal(check(&h->ak_public, &q, &q.attest, &q.sig, &out), 0);
		quoted_done(&q);
	}
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A quote loads the AK from its saved context and flushes it: it must
 * stay about as fast as a quote with the AK kept loaded (0.4 ms on swtpm,
 * measured before this change); 20 ms is far beyond any of it. */
static void test_quote_time(void **state)
{
	struct host *h = &hosts[0];
	double t[50];
	for (size_t i = 0; i < 50; i++) {
		uint8_t nonce[TRUST_NONCE_LEN];
		struct trust_blob a, s;
		random_nonce(nonce);
		double t0 = now_ms();
		assert_int_equal(trust_tpm_quote(h->tpm, PCR, nonce, sizeof(nonce), &a, &s, ERR),
		                 0);
		t[i] = now_ms() - t0;
		trust_blob_done(&a);
		trust_blob_done(&s);
	}
	for (size_t i = 1; i < 50; i++)
		for (size_t j = i; j > 0 && t[j - 1] > t[j]; j--) {
			double x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	printf("quote: median %.2f ms, max %.2f ms (50 quotes)\n", t[25], t[49]);
	assert_true(t[25] < 20);
}

/* With TRUST_WRITE_CORPUS=DIR, writes real inputs for tests/fuzz/fuzz-trust.c
 * there (its format: four 16-bit length-prefixed fields AK public, attest,
 * signature, EK public; nonce; expected value; EK certificate). */
static void put_field(FILE *f, const struct trust_blob *b)
{
	fputc((int)(b->len >> 8), f);
	fputc((int)(b->len & 0xff), f);
	fwrite(b->data, 1, b->len, f);
}

static void corpus_file(const char *dir, const char *name, const struct host *ak_host,
                        const struct quoted *q, const struct host *ek_host)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	put_field(f, &ak_host->ak_public);
	put_field(f, &q->attest);
	put_field(f, &q->sig);
	put_field(f, &ek_host->ek_public);
	fwrite(q->nonce, 1, sizeof(q->nonce), f);
	fwrite(q->value, 1, sizeof(q->value), f);
	fwrite(ek_host->ek_cert.data, 1, ek_host->ek_cert.len, f);
	assert_int_equal(fclose(f), 0);
}

static void test_write_corpus(void **state)
{
	const char *dir = getenv("TRUST_WRITE_CORPUS");
	if (!dir)
		skip();
	struct quoted q;
	quote(&hosts[0], &q);
	corpus_file(dir, "good-quote", &hosts[0], &q, &hosts[0]);
	corpus_file(dir, "other-ak", &hosts[1], &q, &hosts[1]);
	quoted_done(&q);
}

int main(void)
{
	if (!lab_have("swtpm") || !lab_have("swtpm_setup") || !lab_have("swtpm_localca")) {
		printf("skipped: swtpm, swtpm_setup or swtpm_localca is not installed\n");
		return 77;
	}
	srandom((unsigned)getpid());
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	have_root = true;
	atexit(cleanup);
	if (host_setup(&hosts[0], "tpm-a", "ca-a") < 0 ||
	    host_setup(&hosts[1], "tpm-b", "ca-b") < 0)
		return 1;

	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quote_good),
	    cmocka_unit_test(test_quote_wrong_nonce),
	    cmocka_unit_test(test_quote_wrong_value),
	    cmocka_unit_test(test_quote_wrong_key),
	    cmocka_unit_test(test_quote_flipped),
	    cmocka_unit_test(test_quote_truncated),
	    cmocka_unit_test(test_ek_good),
	    cmocka_unit_test(test_ek_wrong_chain),
	    cmocka_unit_test(test_ek_wrong_public),
	    cmocka_unit_test(test_credential),
	    cmocka_unit_test(test_ak_attributes),
	    cmocka_unit_test(test_measure_replay),
	    cmocka_unit_test(test_file_sha256),
	    cmocka_unit_test(test_reopen_restart),
	    cmocka_unit_test(test_write_corpus),
	    cmocka_unit_test(test_killed_agents_leak_nothing),
	    cmocka_unit_test(test_quote_time),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	cleanup();
	return failed;
}
