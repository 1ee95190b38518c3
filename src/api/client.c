/* The asynchronous JSON-line client over TCP (one request, one reply per
 * connection, with a timeout): see client.h. */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/linebuf.h"
#include "server.h"
#include "tls.h"

struct call {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	uv_write_t write;
	char *request;
	char cmd[CTL_CMD_MAX];
	struct linebuf in;
	/* Over TLS: the session and the bytes off the wire. */
	struct ctl_tls *tls;
	struct ctl_tls_session *session;
	struct linebuf raw;
	ctl_call_cb cb;
	void *userdata;
	int handles;
	bool done;
};

static void call_free_cb(uv_handle_t *h)
{
	struct call *c = h->data;
	if (--c->handles > 0)
		return;
	free(c->request);
	linebuf_free(&c->in);
	linebuf_free(&c->raw);
	ctl_tls_session_free(c->session);
	free(c);
}

static void finish(struct call *c, int status, json_t *result, const char *error)
{
	if (c->done)
		return;
	c->done = true;
	c->cb(c->userdata, status, result, error);
	uv_close((uv_handle_t *)&c->timer, call_free_cb);
	uv_close((uv_handle_t *)&c->tcp, call_free_cb);
}

static void fail_errno(struct call *c, int status, const char *what)
{
	char error[160];
	snprintf(error, sizeof(error), "%s: %s", what, uv_strerror(status));
	finish(c, status, NULL, error);
}

static void timeout_cb(uv_timer_t *t)
{
	finish(t->data, -ETIMEDOUT, NULL, "no answer in time");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct call *c = h->data;
	(void)suggested;
	linebuf_alloc(c->session ? &c->raw : &c->in, buf);
}

/* Ends the call once c->in holds the reply line. */
static void take_reply(struct call *c)
{
	char *nl = memchr(c->in.data, '\n', c->in.len);
	if (!nl) {
		if (c->in.len > CTL_LINE_MAX * 16)
			finish(c, -EBADMSG, NULL, "reply too long");
		return;
	}
	bool ok;
	json_t *result = NULL;
	char *reason = NULL, *error = NULL;
	if (ctl_reply_parse(c->in.data, (size_t)(nl - c->in.data), &ok, &result, &reason, &error) <
	    0) {
		finish(c, -EBADMSG, NULL, error ? error : "out of memory");
		free(error);
		return;
	}
	if (ok)
		finish(c, 0, result, NULL);
	else
		finish(c, -EREMOTEIO, NULL, reason);
	json_decref(result);
	free(reason);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct call *c = s->data;
	(void)buf;
	if (c->done)
		return;
	if (nread < 0) {
		fail_errno(c, (int)nread, "connection closed before the reply");
		return;
	}
	if (!c->session) {
		c->in.len += (size_t)nread;
		take_reply(c);
		return;
	}
	c->raw.len += (size_t)nread;
	char *error = NULL;
	int r = ctl_tls_session_feed(c->session, (const uint8_t *)c->raw.data, c->raw.len, &error);
	linebuf_consume(&c->raw, c->raw.len);
	if (r < 0)
		finish(c, r, NULL, error ? error : "TLS: the peer closed the session");
	free(error);
}

static void write_cb(uv_write_t *w, int status)
{
	struct call *c = w->data;
	if (status < 0)
		fail_errno(c, status, "send");
}

struct tls_write {
	uv_write_t req;
	struct call *call;
	char data[];
};

static void tls_write_cb(uv_write_t *w, int status)
{
	struct tls_write *t = (struct tls_write *)w;
	if (status < 0 && status != UV_ECANCELED)
		fail_errno(t->call, status, "send");
	free(t);
}

static void tls_send(void *userdata, const uint8_t *data, size_t len)
{
	struct call *c = userdata;
	struct tls_write *t = malloc(sizeof(*t) + len);
	if (!t) {
		finish(c, -ENOMEM, NULL, "out of memory");
		return;
	}
	t->call = c;
	memcpy(t->data, data, len);
	uv_buf_t buf = uv_buf_init(t->data, (unsigned)len);
	int r = uv_write(&t->req, (uv_stream_t *)&c->tcp, &buf, 1, tls_write_cb);
	if (r < 0) {
		free(t);
		fail_errno(c, r, "send");
	}
}

static void tls_plain(void *userdata, const char *data, size_t len)
{
	struct call *c = userdata;
	if (c->done)
		return;
	if (linebuf_append(&c->in, data, len) < 0) {
		finish(c, -ENOMEM, NULL, "out of memory");
		return;
	}
	take_reply(c);
}

/* The handshake is done: the request goes only to a peer the gate lets
 * this call speak with. */
static void tls_ready(void *userdata)
{
	struct call *c = userdata;
	char host[CTL_PEER_HOST_MAX], *error = NULL;
	if (c->done)
		return;
	int r = ctl_tls_check(c->tls, ctl_tls_session_peer_fp(c->session), c->cmd, host,
	                      sizeof(host), &error);
	if (r == 0)
		r = ctl_tls_session_write(c->session, c->request, strlen(c->request));
	if (r < 0)
		finish(c, r, NULL, error ? error : "TLS: cannot send the request");
	free(error);
}

static const struct ctl_tls_io tls_io = {tls_send, tls_plain, tls_ready};

static void connect_cb(uv_connect_t *req, int status)
{
	struct call *c = req->data;
	if (c->done)
		return;
	if (status < 0) {
		fail_errno(c, status, "connect");
		return;
	}
	if (c->session) {
		char *error = NULL;
		int r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
		if (r < 0)
			fail_errno(c, r, "receive");
		else if (ctl_tls_session_start(c->session, &error) < 0)
			finish(c, -EPROTO, NULL, error ? error : "TLS: cannot start");
		free(error);
		return;
	}
	uv_buf_t buf = uv_buf_init(c->request, (unsigned)strlen(c->request));
	c->write.data = c;
	int r = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (r < 0)
		fail_errno(c, r, "send");
}

int ctl_call(uv_loop_t *loop, const char *address, const char *cmd, json_t *args,
             unsigned timeout_ms, ctl_call_cb cb, void *userdata)
{
	struct sockaddr_in sa;
	if (ctl_parse_address(address, &sa) < 0) {
		json_decref(args);
		return -EINVAL;
	}
	struct call *c = calloc(1, sizeof(*c));
	if (!c) {
		json_decref(args);
		return -ENOMEM;
	}
	c->request = ctl_request_encode(1, cmd, args);
	if (!c->request) {
		free(c);
		return -ENOMEM;
	}
	snprintf(c->cmd, sizeof(c->cmd), "%s", cmd);
	c->tls = ctl_tls_default();
	if (c->tls && ctl_tls_session_new(c->tls, false, &tls_io, c, &c->session) < 0) {
		free(c->request);
		free(c);
		return -ENOMEM;
	}
	c->cb = cb;
	c->userdata = userdata;
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c->connect.data = c;
	c->handles = 2;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_timer_start(&c->timer, timeout_cb, timeout_ms, 0);
	int r = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa, connect_cb);
	if (r < 0) {
		c->done = true;
		uv_close((uv_handle_t *)&c->timer, call_free_cb);
		uv_close((uv_handle_t *)&c->tcp, call_free_cb);
		return r;
	}
	return 0;
}
