/* The control server on a real unix socket and a real libuv loop: a client
 * sends bytes, the loop runs until the reply arrives. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/server.h"

struct fixture {
	uv_loop_t loop;
	struct ctl_server server;
	char dir[64];
	char path[128];
	int calls;
};

static int handler(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                   json_t **ret_result, char **ret_error)
{
	struct fixture *f = userdata;
	f->calls++;
	if (strcmp(req->cmd, "echo") == 0) {
		*ret_result = json_pack("{s:O}", "args", req->args);
		return 0;
	}
	*ret_error = strdup("no such command");
	return -EOPNOTSUPP;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/ettm-test-server-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(ctl_server_start(&f->server, &f->loop, f->path, handler, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ctl_server_close(&f->server, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	/* Closing removes the socket file. */
	assert_int_equal(access(f->path, F_OK), -1);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int client_connect(struct fixture *f)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, f->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	fcntl(fd, F_SETFL, 0);
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		assert_true(n > 0);
		data += n;
		len -= (size_t)n;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* Runs the loop until @want lines arrived or the peer closed; returns the
 * bytes read (NUL-terminated) in @buf. */
static size_t run_until_lines(struct fixture *f, int fd, int want, char *buf, size_t size,
                              bool *ret_closed)
{
	size_t got = 0;
	int lines = 0;
	*ret_closed = false;
	for (int spins = 0; spins < 100000 && lines < want; spins++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		ssize_t n = read(fd, buf + got, size - 1 - got);
		if (n == 0) {
			*ret_closed = true;
			break;
		}
		if (n < 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[got + (size_t)i] == '\n';
		got += (size_t)n;
	}
	buf[got] = '\0';
	return got;
}

static void test_requests_in_one_write(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	bool closed;
	int fd = client_connect(f);
	const char *req = "{\"id\":1,\"cmd\":\"echo\",\"args\":{\"a\":1}}\n"
	                  "not json\n"
	                  "{\"id\":2,\"cmd\":\"nope\"}\n";
	send_all(fd, req, strlen(req));
	run_until_lines(f, fd, 3, buf, sizeof(buf), &closed);
	assert_false(closed);
	assert_string_equal(buf,
	                    "{\"ok\":true,\"result\":{\"args\":{\"a\":1}},\"id\":1}\n"
	                    "{\"ok\":false,\"error\":\"invalid JSON at byte 3: '[' or '{' expected "
	                    "near 'not'\"}\n"
	                    "{\"ok\":false,\"error\":\"no such command\",\"id\":2}\n");
	assert_int_equal(f->calls, 2);
	close(fd);
}

/* A request split over several writes is answered once it is whole. */
static void test_split_request(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	bool closed;
	int fd = client_connect(f);
	send_all(fd, "{\"cmd\":", 7);
	for (int i = 0; i < 100; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->calls, 0);
	send_all(fd, "\"echo\"}\n", 8);
	run_until_lines(f, fd, 1, buf, sizeof(buf), &closed);
	assert_string_equal(buf, "{\"ok\":true,\"result\":{\"args\":{}}}\n");
	close(fd);
}

/* A line over the limit gets one error and the connection is closed;
 * the server keeps serving others. */
static void test_over_long_line(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	bool closed;
	int fd = client_connect(f);
	size_t len = CTL_LINE_MAX + 4096;
	char *junk = malloc(len);
	memset(junk, 'x', len);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	size_t off = 0;
	for (int spins = 0; off < len && spins < 100000; spins++) {
		ssize_t n = write(fd, junk + off, len - off);
		if (n > 0)
			off += (size_t)n;
		uv_run(&f->loop, UV_RUN_NOWAIT);
	}
	free(junk);
	run_until_lines(f, fd, 2, buf, sizeof(buf), &closed);
	assert_true(closed);
	assert_string_equal(buf, "{\"ok\":false,\"error\":\"request longer than 65536 bytes\"}\n");
	close(fd);

	fd = client_connect(f);
	send_all(fd, "{\"cmd\":\"echo\"}\n", 15);
	run_until_lines(f, fd, 1, buf, sizeof(buf), &closed);
	assert_string_equal(buf, "{\"ok\":true,\"result\":{\"args\":{}}}\n");
	close(fd);
}

static void test_live_socket_is_not_replaced(void **state)
{
	struct fixture *f = *state;
	struct ctl_server second;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(ctl_server_start(&second, &loop, f->path, handler, f), -EADDRINUSE);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A client that sends requests and reads no answer: the server stops
 * reading it once a megabyte of answers waits (before, they piled up in
 * memory without bound), and answers every request once it reads. */
static void test_client_that_does_not_read_is_not_heard(void **state)
{
	struct fixture *f = *state;
	enum { N = 20000 };
	char line[256];
	int len = snprintf(line, sizeof(line), "{\"cmd\":\"echo\",\"args\":{\"p\":\"%0200d\"}}\n", 0);
	int fd = client_connect(f);
	int sent = 0, off = 0, calls = -1;
	/* Send what the socket takes until the server stops taking more. */
	for (int idle = 0; sent < N && idle < 2000; idle++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		ssize_t n = write(fd, line + off, (size_t)(len - off));
		if (n > 0) {
			idle = 0;
			off += (int)n;
			if (off == len) {
				off = 0;
				sent++;
			}
		} else {
			usleep(500);
		}
	}
	calls = f->calls;
	assert_true(sent < N);
	assert_true(calls < N);
	/* Now it reads: every request sent is answered. */
	static char buf[1 << 16];
	long lines = 0;
	for (int spins = 0; spins < 2000000 && lines < N; spins++) {
		if (sent < N) {
			ssize_t n = write(fd, line + off, (size_t)(len - off));
			if (n > 0 && (off += (int)n) == len) {
				off = 0;
				sent++;
			}
		}
		uv_run(&f->loop, UV_RUN_NOWAIT);
		ssize_t n = read(fd, buf, sizeof(buf));
		assert_true(n != 0);
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	assert_int_equal(lines, N);
	assert_int_equal(f->calls, N);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_requests_in_one_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_split_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_over_long_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_live_socket_is_not_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_that_does_not_read_is_not_heard, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
