/* Software TPMs for the trust tests: a private swtpm-localca per CA, TPMs
 * provisioned with swtpm_setup (EK and platform certificates) under it,
 * swtpm processes started and stopped by PID. Everything lives in one
 * directory made by the caller. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* Paths stay short: a Unix socket's path has at most 107 bytes. */
#define LAB_PATH 100

struct swtpm {
	char state[LAB_PATH]; /* tpmstate directory */
	char sock[LAB_PATH];  /* server socket */
	char tcti[LAB_PATH + 16];
	pid_t pid; /* 0 when stopped */
};

/* Whether @prog is an executable on PATH. */
bool lab_have(const char *prog);

/* Runs @argv (PATH lookup) with stdout and stderr appended to @log (or
 * inherited if NULL); its exit status, or -1 if it did not exit. */
int lab_run(char *const argv[], const char *log);

/* A local CA named @name under @root: its configuration files and its
 * state directory, @ret_dir, where its root and issuer certificates appear
 * after the first TPM is provisioned. */
int lab_ca(const char *root, const char *name, char ret_dir[LAB_PATH]);

/* Provisions TPM @name under @root with the CA @ca (a name given to
 * lab_ca) and fills @ret (not started). */
int lab_tpm_provision(const char *root, const char *name, const char *ca, struct swtpm *ret);

/* Starts swtpm on @t's state, waiting until its socket accepts. */
int lab_tpm_start(struct swtpm *t);
void lab_tpm_stop(struct swtpm *t);

/* Removes @dir and everything under it. */
void lab_rm_rf(const char *dir);
