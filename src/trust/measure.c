/* Measurements: SHA-256 of what the agent runs and the value a PCR takes
 * when those digests are extended into it. Pure; only libcrypto. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/error.h"
#include "lib/hex.h"
#include "trust/trust.h"

void trust_blob_done(struct trust_blob *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

void trust_sha256(const void *data, size_t len, uint8_t ret[TRUST_DIGEST_LEN])
{
	unsigned int n = TRUST_DIGEST_LEN;
	/* EVP_Digest with SHA-256 fails only when out of memory: a zero
	 * digest then can match nothing a TPM produced. */
	if (!EVP_Digest(data, len, ret, &n, EVP_sha256(), NULL))
		memset(ret, 0, TRUST_DIGEST_LEN);
}

int trust_file_sha256(const char *path, uint8_t ret[TRUST_DIGEST_LEN])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int r = -ENOMEM;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		goto out;
	uint8_t buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		if (!EVP_DigestUpdate(md, buf, (size_t)n))
			goto out;
	}
	unsigned int len = TRUST_DIGEST_LEN;
	uint8_t digest[TRUST_DIGEST_LEN];
	if (!EVP_DigestFinal_ex(md, digest, &len))
		goto out;
	memcpy(ret, digest, TRUST_DIGEST_LEN);
	r = 0;
out:
	EVP_MD_CTX_free(md);
	close(fd);
	return r;
}

/* TPM 2.0 Part 3, 22.2 "TPM2_PCR_Extend": PCR_new = H(PCR_old || digest);
 * 22.8 "TPM2_PCR_Reset" sets a resettable PCR to zeros. */
void trust_pcr_replay(const uint8_t (*digests)[TRUST_DIGEST_LEN], size_t n,
                      uint8_t ret[TRUST_DIGEST_LEN])
{
	uint8_t pcr[2 * TRUST_DIGEST_LEN] = {0};
	for (size_t i = 0; i < n; i++) {
		memcpy(pcr + TRUST_DIGEST_LEN, digests[i], TRUST_DIGEST_LEN);
		trust_sha256(pcr, sizeof(pcr), pcr);
	}
	memcpy(ret, pcr, TRUST_DIGEST_LEN);
}

int trust_agent_digests(const char *binary, const char *config_text,
                        uint8_t ret[2][TRUST_DIGEST_LEN], char **ret_error)
{
	int r = trust_file_sha256(binary, ret[0]);
	if (r < 0)
		return error_set(ret_error, r, "cannot read the agent's binary %s: %s", binary,
		                 strerror(-r));
	trust_sha256(config_text, strlen(config_text), ret[1]);
	return 0;
}

int trust_measurement(const char *binary, const char *config_text, char ret_hex[TRUST_FP_LEN],
                      char **ret_error)
{
	uint8_t d[2][TRUST_DIGEST_LEN], pcr[TRUST_DIGEST_LEN];
	int r = trust_agent_digests(binary, config_text, d, ret_error);
	if (r < 0)
		return r;
	trust_pcr_replay((const uint8_t(*)[TRUST_DIGEST_LEN])d, 2, pcr);
	hex_encode(pcr, sizeof(pcr), ret_hex);
	return 0;
}
