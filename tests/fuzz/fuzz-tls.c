/* Fuzz target: the peer API's TLS sessions (src/api/tls.c) fed what a peer
 * could send: the first byte picks the side (even: this agent is the
 * server, odd: the client, which first sends its ClientHello), the rest
 * arrives as the peer's bytes in chunks whose sizes the second byte picks.
 * A session must refuse what is not TLS 1.3 with a reason, and never hand
 * on plaintext before its handshake is done. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ctl_tls *tls;
static char dir[64];

static void remove_identity(void)
{
	char path[128];
	ctl_tls_free(tls);
	snprintf(path, sizeof(path), "%s/%s", dir, CTL_TLS_KEY_FILE);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", dir, CTL_TLS_CERT_FILE);
	unlink(path);
	rmdir(dir);
}

struct peer {
	struct ctl_tls_session *s;
	size_t sent, plain;
	bool ready;
};

static void on_send(void *userdata, const uint8_t *d, size_t len)
{
	((struct peer *)userdata)->sent += len;
	(void)d;
}

static void on_plain(void *userdata, const char *d, size_t len)
{
	struct peer *p = userdata;
	if (!p->ready)
		__builtin_trap(); /* plaintext before the handshake */
	p->plain += len;
	(void)d;
}

static void on_ready(void *userdata)
{
	struct peer *p = userdata;
	if (strlen(ctl_tls_session_peer_fp(p->s)) != 64)
		__builtin_trap(); /* ready with no peer key */
	p->ready = true;
}

static const struct ctl_tls_io io = {on_send, on_plain, on_ready};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!tls) {
		char *error = NULL;
		snprintf(dir, sizeof(dir), "/tmp/ettm-fuzz-tls-XXXXXX");
		if (!mkdtemp(dir) || ctl_tls_open(dir, "fuzz", &tls, &error) < 0)
			abort();
		atexit(remove_identity);
	}
	if (size < 2)
		return 0;
	struct peer p = {0};
	bool server = (data[0] & 1) == 0;
	size_t chunk = (size_t)data[1] * 16 + 1;
	char *error = NULL;
	if (ctl_tls_session_new(tls, server, &io, &p, &p.s) < 0)
		return 0;
	int r = ctl_tls_session_start(p.s, &error);
	if (!server && r == 0 && p.sent == 0)
		__builtin_trap(); /* a client starts with its ClientHello */
	for (size_t at = 2; r == 0 && at < size; at += chunk) {
		size_t n = size - at < chunk ? size - at : chunk;
		r = ctl_tls_session_feed(p.s, data + at, n, &error);
		if (r < 0 && r != -EPROTO && r != -ECONNRESET && r != -ENOMEM)
			__builtin_trap();
		if (r == -EPROTO && !error)
			__builtin_trap(); /* a refusal says why */
	}
	free(error);
	ctl_tls_session_free(p.s);
	return 0;
}
