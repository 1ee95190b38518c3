/* ettmctl's one request to the agent: connect to its control socket, send
 * one request line, read one reply line (docs/control-protocol.md). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/proto.h"
#include "lib/cleanup.h"
#include "ettmctl/ettmctl.h"

/* A connected socket to the agent at @path, or -1 after saying why. */
static int connect_agent(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		output_fail("%s: socket path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		output_fail("cannot reach the agent at %s: %s%s", path, strerror(e),
		            e == ENOENT || e == ECONNREFUSED ? " (is ettmd running?)" : "");
		return -1;
	}
	return TAKE_FD(fd);
}

/* Writes all of @line (NULL: nothing to send). */
static bool send_line(int fd, const char *line)
{
	size_t len = line ? strlen(line) : 0, off = 0;
	while (line && off < len) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return len > 0 && off == len;
}

/* Reads until the first '\n' into @buf; its position, or NULL if the
 * connection ended first. */
static char *read_line(int fd, char *buf, size_t size)
{
	size_t got = 0;
	char *nl = NULL;
	while (!nl && got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	return nl;
}

int request_call(const struct options *o, const char *cmd, json_t *args, json_t **ret_result)
{
	_cleanup_close_ int fd = connect_agent(o->socket);
	if (fd < 0) {
		json_decref(args);
		return 1;
	}
	_cleanup_free_ char *line = ctl_request_encode(1, cmd, args);
	if (!send_line(fd, line))
		return output_fail("cannot send the request to %s", o->socket);

	static char buf[CTL_LINE_MAX * 16];
	char *nl = read_line(fd, buf, sizeof(buf));
	if (!nl)
		return output_fail("the agent at %s closed the connection without a reply",
		                   o->socket);

	bool ok;
	_cleanup_free_ char *reason = NULL, *error = NULL;
	json_t *result = NULL;
	if (ctl_reply_parse(buf, (size_t)(nl - buf), &ok, &result, &reason, &error) < 0)
		return output_fail("%s", error ? error : "out of memory");
	if (!ok)
		return output_fail("%s", reason);
	*ret_result = result;
	return 0;
}
