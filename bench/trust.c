/* One run of the trust benchmark (bench/trust drives it): against the
 * swtpm behind TCTI (process SWTPM_PID), N quotes of PCR 16 with
 * trust_tpm_quote, then N verifications with trust_quote_check. Prints one
 * JSON line: per operation, wall time and this process's CPU time (user +
 * system, getrusage), and for quotes the swtpm process's CPU time too
 * (/proc/PID/stat utime + stime), all in microseconds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "trust/trust.h"

#define PCR 16

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

/* proc(5): fields 14 and 15 of /proc/PID/stat, in clock ticks; the command
 * name (field 2) is in parentheses and may hold spaces. */
static double proc_cpu_us(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long utime, stime;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
	                 &stime) != 2)
		return -1;
	return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s TCTI SWTPM_PID N\n", argv[0]);
		return 2;
	}
	long pid = strtol(argv[2], NULL, 10);
	size_t n = strtoul(argv[3], NULL, 10);
	char *err = NULL; /* the process ends on a failure */
	struct trust_tpm *t;
	struct trust_blob ak;
	if (trust_tpm_open(argv[1], &t, &err) < 0 || trust_tpm_ak(t, &ak, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	uint8_t d[1][TRUST_DIGEST_LEN], value[TRUST_DIGEST_LEN];
	trust_sha256("ettmd", 5, d[0]);
	trust_pcr_replay(d, 1, value);
	if (trust_tpm_measure(t, PCR, d, 1, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct trust_blob *attest = calloc(n, sizeof(*attest)), *sig = calloc(n, sizeof(*sig));
	uint8_t(*nonce)[TRUST_NONCE_LEN] = calloc(n, TRUST_NONCE_LEN);
	if (!attest || !sig || !nonce)
		return 1;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < TRUST_NONCE_LEN; k++)
			nonce[i][k] = (uint8_t)random();

	double w0 = now_us(), c0 = cpu_us(), s0 = proc_cpu_us(pid);
	for (size_t i = 0; i < n; i++) {
		if (trust_tpm_quote(t, PCR, nonce[i], TRUST_NONCE_LEN, &attest[i], &sig[i], &err) <
		    0) {
			fprintf(stderr, "quote %zu: %s\n", i, err);
			return 1;
		}
	}
	double w1 = now_us(), c1 = cpu_us(), s1 = proc_cpu_us(pid);
	for (size_t i = 0; i < n; i++) {
		struct trust_quote q;
		if (trust_quote_check(&ak, &attest[i], &sig[i], nonce[i], TRUST_NONCE_LEN, PCR,
		                      value, &q, &err) < 0) {
			fprintf(stderr, "verify %zu: %s\n", i, err);
			return 1;
		}
	}
	double w2 = now_us(), c2 = cpu_us();
	printf("{\"n\": %zu, \"quote_wall_us\": %.1f, \"quote_cpu_us\": %.1f, "
	       "\"quote_swtpm_cpu_us\": %.1f, \"verify_wall_us\": %.1f, \"verify_cpu_us\": %.2f}\n",
	       n, (w1 - w0) / n, (c1 - c0) / n, s0 < 0 || s1 < 0 ? -1.0 : (s1 - s0) / n,
	       (w2 - w1) / n, (c2 - c1) / n);
	for (size_t i = 0; i < n; i++) {
		trust_blob_done(&attest[i]);
		trust_blob_done(&sig[i]);
	}
	free(attest);
	free(sig);
	free(nonce);
	trust_blob_done(&ak);
	trust_tpm_close(t);
	return 0;
}
