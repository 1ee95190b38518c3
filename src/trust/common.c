/* What every file of src/trust shares: the error slot its functions write
 * their reasons into (internal.h) and keeping tpm2-tss quiet. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "trust/internal.h"

void trust_err(char **ret_error, const char *fmt, ...)
{
	if (!ret_error)
		return;
	free(*ret_error);
	va_list ap;
	va_start(ap, fmt);
	error_setv(ret_error, 0, fmt, ap);
	va_end(ap);
}

/* tpm2-tss logs to stderr by default, and tss2-mu does so for every
 * malformed structure: input from the network must not reach the daemon's
 * log that way (this module reports through @ret_error, rate limiting is the
 * caller's). TSS2_LOG set by an operator still wins. Called before any
 * tss2 function; tss2 reads the variable at its first log call. */
static void quiet_once(void)
{
	setenv("TSS2_LOG", "all+none", 0);
}

void trust_quiet_tss(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, quiet_once);
}

int trust_fail_default(int r, char **ret_error, const char *what)
{
	if (r < 0 && ret_error && !*ret_error)
		trust_err(ret_error, "%s: %s", what, strerror(-r));
	return r;
}

int trust_error_out(int r, char *error, char **ret_error)
{
	if (r < 0 && ret_error)
		*ret_error = error;
	else
		free(error);
	return r;
}
