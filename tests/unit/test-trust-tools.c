/* The trust module against another implementation of the same
 * specifications, tpm2-tools, on one swtpm: our quotes verify with
 * tpm2_checkquote, tpm2_quote's quotes (with an AK made by tpm2_createak)
 * verify with trust_quote_check, and a credential made by
 * tpm2_makecredential (in software, --tcti=none) activates with
 * trust_tpm_activate. Skipped (77) without swtpm or tpm2-tools. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/hex.h"
#include "swtpm-lab.h"
#include "trust/trust.h"

#define PCR 16

static char root[] = "/tmp/ettm-test-trust-tools-XXXXXX";
static bool have_root;
static struct swtpm sw;
static char log_path[LAB_PATH + 16];
/* The last failure's message; ERR resets it and hands it to a call. */
static char *err;
#define ERR (free(err), err = NULL, &err)

static void cleanup(void)
{
	lab_tpm_stop(&sw);
	if (have_root)
		lab_rm_rf(root);
	have_root = false;
}

/* @root/@name */
static const char *at(const char *name)
{
	static char paths[8][LAB_PATH + 32];
	static unsigned next;
	char *p = paths[next++ % 8];
	snprintf(p, sizeof(paths[0]), "%s/%s", root, name);
	return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static struct trust_blob read_bytes(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	struct trust_blob b = {malloc(65536), 0};
	b.len = fread(b.data, 1, 65536, f);
	fclose(f);
	return b;
}

/* Runs a tool; its output goes to the log, which is printed on failure. */
static int tool(char *const argv[])
{
	int status = lab_run(argv, log_path);
	if (status != 0)
		fprintf(stderr, "%s exited with %d (log: %s)\n", argv[0], status, log_path);
	return status;
}

/* Flushes the transient objects the tools left loaded. */
static int tools_flush(void)
{
	char *flush_objects[] = {"tpm2_flushcontext", "-t", NULL};
	return tool(flush_objects);
}

/* An EK of algorithm @alg (the TCG default template) and an ECC P-256
 * ECDSA AK under it, made by tpm2-tools: PREFIXek.ctx/.pub and
 * PREFIXak.ctx/.pub/.name in the test's directory. The tools leave what they
 * made loaded, saved as contexts; swtpm has room for three objects, so
 * they are flushed. */
static void tools_ek_ak(const char *alg, const char *prefix)
{
	char name[6][32];
	const char *suffix[] = {"ek.ctx", "ek.pub", "ak.ctx", "ak.pub", "ak.name"};
	for (size_t i = 0; i < 5; i++)
		snprintf(name[i], sizeof(name[i]), "%s%s", prefix, suffix[i]);
	char *ek[] = {"tpm2_createek", "-c", (char *)at(name[0]), "-G",
	              (char *)alg,     "-u", (char *)at(name[1]), NULL};
	assert_int_equal(tool(ek), 0);
	char *ak[] = {"tpm2_createak",
	              "-C",
	              (char *)at(name[0]),
	              "-c",
	              (char *)at(name[2]),
	              "-G",
	              "ecc",
	              "-g",
	              "sha256",
	              "-s",
	              "ecdsa",
	              "-u",
	              (char *)at(name[3]),
	              "-n",
	              (char *)at(name[4]),
	              NULL};
	assert_int_equal(tool(ak), 0);
	assert_int_equal(tools_flush(), 0);
	char *flush_sessions[] = {"tpm2_flushcontext", "-s", NULL};
	assert_int_equal(tool(flush_sessions), 0);
}

static void measure(struct trust_tpm *t, uint8_t value[TRUST_DIGEST_LEN])
{
	uint8_t d[1][TRUST_DIGEST_LEN];
	trust_sha256("ettmd", 5, d[0]);
	assert_int_equal(trust_tpm_measure(t, PCR, d, 1, ERR), 0);
	trust_pcr_replay(d, 1, value);
}

static void test_checkquote_ours(void **state)
{
	struct trust_tpm *t;
	assert_int_equal(trust_tpm_open(sw.tcti, &t, ERR), 0);
	uint8_t value[TRUST_DIGEST_LEN], nonce[TRUST_NONCE_LEN];
	char nonce_hex[2 * TRUST_NONCE_LEN + 1], wrong_hex[2 * TRUST_NONCE_LEN + 1];
	measure(t, value);
	for (size_t i = 0; i < sizeof(nonce); i++)
		nonce[i] = (uint8_t)(i * 7 + 1);
	hex_encode(nonce, sizeof(nonce), nonce_hex);
	struct trust_blob ak, attest, sig;
	assert_int_equal(trust_tpm_ak(t, &ak, ERR), 0);
	assert_int_equal(trust_tpm_quote(t, PCR, nonce, sizeof(nonce), &attest, &sig, ERR), 0);
	trust_tpm_close(t);

	/* tpm2_checkquote reads the TPMS_ATTEST without the TPM2B's size. */
	write_bytes(at("ours.ak.pub"), ak.data, ak.len);
	write_bytes(at("ours.msg"), attest.data + 2, attest.len - 2);
	write_bytes(at("ours.sig"), sig.data, sig.len);
	write_bytes(at("ours.pcr"), value, sizeof(value));
	char *argv[] = {"tpm2_checkquote",
	                "-u",
	                (char *)at("ours.ak.pub"),
	                "-m",
	                (char *)at("ours.msg"),
	                "-s",
	                (char *)at("ours.sig"),
	                "-f",
	                (char *)at("ours.pcr"),
	                "-l",
	                "sha256:16",
	                "-g",
	                "sha256",
	                "-q",
	                nonce_hex,
	                NULL};
	assert_int_equal(tool(argv), 0);

	/* The tool does check: another nonce, another PCR value. */
	memcpy(wrong_hex, nonce_hex, sizeof(wrong_hex));
	wrong_hex[0] = wrong_hex[0] == '0' ? '1' : '0';
	argv[14] = wrong_hex;
	assert_int_not_equal(lab_run(argv, log_path), 0);
	argv[14] = nonce_hex;
	value[0] ^= 1;
	write_bytes(at("ours.pcr"), value, sizeof(value));
	assert_int_not_equal(lab_run(argv, log_path), 0);

	trust_blob_done(&ak);
	trust_blob_done(&attest);
	trust_blob_done(&sig);
}

static void test_tools_quote_theirs(void **state)
{
	tools_ek_ak("rsa", "");
	uint8_t d[1][TRUST_DIGEST_LEN], value[TRUST_DIGEST_LEN];
	char hex[2 * TRUST_DIGEST_LEN + 1], arg[3 * TRUST_DIGEST_LEN];
	trust_sha256("their measurement", 17, d[0]);
	trust_pcr_replay(d, 1, value);
	hex_encode(d[0], TRUST_DIGEST_LEN, hex);
	snprintf(arg, sizeof(arg), "16:sha256=%s", hex);
	char *reset[] = {"tpm2_pcrreset", "16", NULL};
	char *extend[] = {"tpm2_pcrextend", arg, NULL};
	assert_int_equal(tool(reset), 0);
	assert_int_equal(tool(extend), 0);
	uint8_t nonce[20];
	for (size_t i = 0; i < sizeof(nonce); i++)
		nonce[i] = (uint8_t)(0xa0 + i);
	char nonce_hex[2 * sizeof(nonce) + 1];
	hex_encode(nonce, sizeof(nonce), nonce_hex);
	char *quote[] = {"tpm2_quote",
	                 "-c",
	                 (char *)at("ak.ctx"),
	                 "-l",
	                 "sha256:16",
	                 "-q",
	                 nonce_hex,
	                 "-m",
	                 (char *)at("theirs.msg"),
	                 "-s",
	                 (char *)at("theirs.sig"),
	                 "-g",
	                 "sha256",
	                 NULL};
	assert_int_equal(tool(quote), 0);
	assert_int_equal(tools_flush(), 0);

	struct trust_blob pub = read_bytes(at("ak.pub")), name = read_bytes(at("ak.name"));
	struct trust_blob msg = read_bytes(at("theirs.msg")), sig = read_bytes(at("theirs.sig"));
	char fp[TRUST_FP_LEN];
	uint8_t our_name[2 + TRUST_DIGEST_LEN];
	int r = trust_ak_check(&pub, fp, our_name, ERR);
	if (r < 0)
		fail_msg("tpm2_createak's AK refused: %d %s", r, err);
	/* Both compute the same TPM name of the key. */
	assert_int_equal(name.len, sizeof(our_name));
	assert_memory_equal(name.data, our_name, sizeof(our_name));

	/* Our interface carries the TPM2B_ATTEST: put its size in front. */
	struct trust_blob attest = {malloc(msg.len + 2), msg.len + 2};
	attest.data[0] = (uint8_t)(msg.len >> 8);
	attest.data[1] = (uint8_t)msg.len;
	memcpy(attest.data + 2, msg.data, msg.len);
	struct trust_quote q;
	r = trust_quote_check(&pub, &attest, &sig, nonce, sizeof(nonce), PCR, value, &q, ERR);
	if (r < 0)
		fail_msg("tpm2_quote's quote refused: %d %s", r, err);
	value[5] ^= 1;
	assert_int_equal(
	    trust_quote_check(&pub, &attest, &sig, nonce, sizeof(nonce), PCR, value, &q, ERR),
	    -EACCES);
	trust_blob_done(&pub);
	trust_blob_done(&name);
	trust_blob_done(&msg);
	trust_blob_done(&sig);
	trust_blob_done(&attest);
}

/* tpm2-tools' credential file: magic 0xbadcc0de, version 1, then the
 * TPM2B_ID_OBJECT and the TPM2B_ENCRYPTED_SECRET. */
static void test_makecredential_theirs(void **state)
{
	struct trust_tpm *t;
	assert_int_equal(trust_tpm_open(sw.tcti, &t, ERR), 0);
	struct trust_blob cert, ek, ak;
	assert_int_equal(trust_tpm_ek(t, &cert, &ek, ERR), 0);
	assert_int_equal(trust_tpm_ak(t, &ak, ERR), 0);
	char fp[TRUST_FP_LEN];
	uint8_t name[2 + TRUST_DIGEST_LEN];
	assert_int_equal(trust_ak_check(&ak, fp, name, ERR), 0);
	write_bytes(at("mc.ek.pub"), ek.data, ek.len);
	char name_hex[2 * sizeof(name) + 1];
	hex_encode(name, sizeof(name), name_hex); /* -n takes the name in hex */
	const char secret[] = "made by tpm2_makecredential";
	write_bytes(at("mc.secret"), secret, sizeof(secret));
	char *argv[] = {"tpm2_makecredential",
	                "--tcti=none",
	                "-u",
	                (char *)at("mc.ek.pub"),
	                "-s",
	                (char *)at("mc.secret"),
	                "-n",
	                name_hex,
	                "-o",
	                (char *)at("mc.cred"),
	                NULL};
	assert_int_equal(tool(argv), 0);
	struct trust_blob file = read_bytes(at("mc.cred"));
	assert_true(file.len > 10);
	assert_memory_equal(file.data, "\xba\xdc\xc0\xde\x00\x00\x00\x01", 8);
	size_t id_len = 2 + ((size_t)file.data[8] << 8 | file.data[9]);
	assert_true(8 + id_len < file.len);
	struct trust_blob cred = {file.data + 8, id_len};
	struct trust_blob sec = {file.data + 8 + id_len, file.len - 8 - id_len};
	struct trust_blob plain;
	int r = trust_tpm_activate(t, &cred, &sec, &plain, ERR);
	if (r < 0)
		fail_msg("tpm2_makecredential's credential refused: %d %s", r, err);
	assert_int_equal(plain.len, sizeof(secret));
	assert_memory_equal(plain.data, secret, sizeof(secret));
	trust_blob_done(&plain);
	trust_blob_done(&file);
	trust_blob_done(&cert);
	trust_blob_done(&ek);
	trust_blob_done(&ak);
	trust_tpm_close(t);
}

/* An ECC NIST P-256 EK (the TCG default template L-2, made by
 * tpm2_createek): trust_make_credential's ECDH seed, activated by
 * tpm2_activatecredential under the EK's PolicySecret. swtpm certifies
 * only RSA 2048 and P-384 EKs, so this key has no certificate. */
static void test_makecredential_ecc_ek(void **state)
{
	tools_ek_ak("ecc", "ecc");

	struct trust_blob ek_pub = read_bytes(at("eccek.pub")),
	                  ak_pub = read_bytes(at("eccak.pub"));
	char fp[TRUST_FP_LEN];
	uint8_t name[2 + TRUST_DIGEST_LEN];
	assert_int_equal(trust_ak_check(&ak_pub, fp, name, ERR), 0);
	const uint8_t secret[] = "sealed to an ECC EK";
	struct trust_blob cred, sec;
	int r = trust_make_credential(&ek_pub, name, secret, sizeof(secret), &cred, &sec, ERR);
	if (r < 0)
		fail_msg("trust_make_credential (ECC EK): %d %s", r, err);
	FILE *f = fopen(at("ecc.cred"), "wb");
	assert_non_null(f);
	fwrite("\xba\xdc\xc0\xde\x00\x00\x00\x01", 1, 8, f);
	fwrite(cred.data, 1, cred.len, f);
	fwrite(sec.data, 1, sec.len, f);
	assert_int_equal(fclose(f), 0);

	char session_arg[LAB_PATH + 48];
	snprintf(session_arg, sizeof(session_arg), "session:%s", at("session.ctx"));
	char *start[] = {"tpm2_startauthsession", "--policy-session", "-S",
	                 (char *)at("session.ctx"), NULL};
	char *policy[] = {"tpm2_policysecret", "-S", (char *)at("session.ctx"), "-c", "e", NULL};
	char *activate[] = {"tpm2_activatecredential",
	                    "-c",
	                    (char *)at("eccak.ctx"),
	                    "-C",
	                    (char *)at("eccek.ctx"),
	                    "-i",
	                    (char *)at("ecc.cred"),
	                    "-o",
	                    (char *)at("ecc.plain"),
	                    "-P",
	                    session_arg,
	                    NULL};
	char *flush_session[] = {"tpm2_flushcontext", (char *)at("session.ctx"), NULL};
	assert_int_equal(tool(start), 0);
	assert_int_equal(tool(policy), 0);
	int status = tool(activate);
	lab_run(flush_session, log_path);
	tools_flush();
	assert_int_equal(status, 0);
	struct trust_blob plain = read_bytes(at("ecc.plain"));
	assert_int_equal(plain.len, sizeof(secret));
	assert_memory_equal(plain.data, secret, sizeof(secret));
	trust_blob_done(&plain);
	trust_blob_done(&cred);
	trust_blob_done(&sec);
	trust_blob_done(&ek_pub);
	trust_blob_done(&ak_pub);
}

/* The TPM side with an ECC EK: the RSA EK certificate removed, an ECC one
 * (for the key of template L-2, from a CA made here with the openssl
 * tool) written at 0x01c0000a with the platform authorization. Then
 * trust_tpm_ek recreates the ECC EK and matches it to the certificate,
 * and a credential sealed to it activates with trust_tpm_activate. Last:
 * it changes the TPM's NV. */
static void test_ecc_ek_end_to_end(void **state)
{
	if (!lab_have("openssl"))
		skip();
	char *ek[] = {"tpm2_createek", "-c", (char *)at("e2e.ek.ctx"), "-G",
	              "ecc",           "-u", (char *)at("e2e.ek.pem"), "-f",
	              "pem",           NULL};
	char *ca[] = {"openssl",
	              "req",
	              "-x509",
	              "-newkey",
	              "ec",
	              "-pkeyopt",
	              "ec_paramgen_curve:P-256",
	              "-nodes",
	              "-keyout",
	              (char *)at("e2e.ca.key"),
	              "-out",
	              (char *)at("e2e.ca.pem"),
	              "-subj",
	              "/CN=ETTM test EK CA",
	              "-days",
	              "1",
	              NULL};
	char *cert[] = {"openssl",
	                "x509",
	                "-new",
	                "-subj",
	                "/CN=ECC EK",
	                "-force_pubkey",
	                (char *)at("e2e.ek.pem"),
	                "-CA",
	                (char *)at("e2e.ca.pem"),
	                "-CAkey",
	                (char *)at("e2e.ca.key"),
	                "-days",
	                "1",
	                "-outform",
	                "der",
	                "-out",
	                (char *)at("e2e.ek.der"),
	                NULL};
	assert_int_equal(tool(ek), 0);
	assert_int_equal(tools_flush(), 0);
	assert_int_equal(tool(ca), 0);
	assert_int_equal(tool(cert), 0);
	struct trust_blob der = read_bytes(at("e2e.ek.der"));
	char size[16];
	snprintf(size, sizeof(size), "%zu", der.len);
	char *undefine[] = {"tpm2_nvundefine", "-C", "p", "0x01c00002", NULL};
	char *define[] = {"tpm2_nvdefine",
	                  "0x01c0000a",
	                  "-C",
	                  "p",
	                  "-s",
	                  size,
	                  "-a",
	                  "ppwrite|ppread|ownerread|authread|no_da|platformcreate",
	                  NULL};
	char *write[] = {"tpm2_nvwrite",           "-C",         "p", "-i",
	                 (char *)at("e2e.ek.der"), "0x01c0000a", NULL};
	assert_int_equal(tool(undefine), 0);
	assert_int_equal(tool(define), 0);
	assert_int_equal(tool(write), 0);

	struct trust_tpm *t;
	assert_int_equal(trust_tpm_open(sw.tcti, &t, ERR), 0);
	struct trust_blob c, pub, ak;
	int r = trust_tpm_ek(t, &c, &pub, ERR);
	if (r < 0)
		fail_msg("trust_tpm_ek (ECC): %d %s", r, err);
	assert_int_equal(c.len, der.len);
	assert_memory_equal(c.data, der.data, der.len);
	char fp[TRUST_FP_LEN];
	r = trust_ek_check(&c, &pub, at("e2e.ca.pem"), fp, ERR);
	if (r < 0)
		fail_msg("trust_ek_check (ECC): %d %s", r, err);
	uint8_t name[2 + TRUST_DIGEST_LEN];
	assert_int_equal(trust_tpm_ak(t, &ak, ERR), 0);
	assert_int_equal(trust_ak_check(&ak, fp, name, ERR), 0);
	const uint8_t secret[TRUST_DIGEST_LEN] = "an ECC EK from end to end";
	struct trust_blob cred, sec, plain;
	assert_int_equal(
	    trust_make_credential(&pub, name, secret, sizeof(secret), &cred, &sec, ERR), 0);
	r = trust_tpm_activate(t, &cred, &sec, &plain, ERR);
	if (r < 0)
		fail_msg("trust_tpm_activate (ECC EK): %d %s", r, err);
	assert_int_equal(plain.len, sizeof(secret));
	assert_memory_equal(plain.data, secret, sizeof(secret));
	trust_blob_done(&plain);
	/* Bound to this AK's name: another name does not activate. */
	name[5] ^= 1;
	trust_blob_done(&cred);
	trust_blob_done(&sec);
	assert_int_equal(
	    trust_make_credential(&pub, name, secret, sizeof(secret), &cred, &sec, ERR), 0);
	assert_int_equal(trust_tpm_activate(t, &cred, &sec, &plain, ERR), -EACCES);
	trust_blob_done(&cred);
	trust_blob_done(&sec);
	trust_blob_done(&c);
	trust_blob_done(&pub);
	trust_blob_done(&ak);
	trust_blob_done(&der);
	trust_tpm_close(t);
}

int main(void)
{
	const char *need[] = {
	    "swtpm",      "swtpm_setup",   "swtpm_localca",       "tpm2_checkquote",
	    "tpm2_quote", "tpm2_createak", "tpm2_makecredential", "tpm2_activatecredential"};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (!lab_have(need[i])) {
			printf("skipped: %s is not installed (swtpm, swtpm-tools, tpm2-tools)\n",
			       need[i]);
			return 77;
		}
	}
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	have_root = true;
	atexit(cleanup);
	snprintf(log_path, sizeof(log_path), "%s/tools.log", root);
	char ca_dir[LAB_PATH];
	if (lab_ca(root, "ca", ca_dir) < 0 || lab_tpm_provision(root, "tpm", "ca", &sw) < 0 ||
	    lab_tpm_start(&sw) < 0)
		return 1;
	setenv("TPM2TOOLS_TCTI", sw.tcti, 1);

	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_checkquote_ours),
	    cmocka_unit_test(test_tools_quote_theirs),
	    cmocka_unit_test(test_makecredential_theirs),
	    cmocka_unit_test(test_makecredential_ecc_ek),
	    cmocka_unit_test(test_ecc_ek_end_to_end),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (failed) {
		char *cat[] = {"cat", log_path, NULL};
		lab_run(cat, NULL);
	}
	cleanup();
	return failed;
}
