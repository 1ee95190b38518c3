/* ettmctl's one request to the agent: connect to its control socket, send
 * one request line, read one reply line (docs/control-protocol.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/proto.h"
#include "ettmctl/ettmctl.h"

/* Sends one request and reads its reply line. Returns 0 with the result, or
 * 1 after printing why on stderr. */
int request_call(const struct options *o, const char *cmd, json_t *args, json_t **ret_result)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(o->socket) >= sizeof(sa.sun_path)) {
		json_decref(args);
		return output_fail("%s: socket path too long", o->socket);
	}
	strcpy(sa.sun_path, o->socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		json_decref(args);
		return output_fail("cannot reach the agent at %s: %s%s", o->socket, strerror(e),
		                   e == ENOENT || e == ECONNREFUSED ? " (is ettmd running?)" : "");
	}

	char *line = ctl_request_encode(1, cmd, args);
	size_t len = line ? strlen(line) : 0, off = 0;
	while (line && off < len) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
	if (off != len || len == 0) {
		close(fd);
		return output_fail("cannot send the request to %s", o->socket);
	}

	static char buf[CTL_LINE_MAX * 16];
	size_t got = 0;
	char *nl = NULL;
	while (!nl && got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	close(fd);
	if (!nl)
		return output_fail("the agent at %s closed the connection without a reply",
		                   o->socket);

	bool ok;
	char *reason = NULL, *error = NULL;
	json_t *result = NULL;
	if (ctl_reply_parse(buf, (size_t)(nl - buf), &ok, &result, &reason, &error) < 0) {
		output_fail("%s", error ? error : "out of memory");
		free(error);
		return 1;
	}
	if (!ok) {
		output_fail("%s", reason);
		free(reason);
		return 1;
	}
	*ret_result = result;
	return 0;
}
