/* The asynchronous JSON-line client over TCP: a connection that carries
 * calls one after the other, each with a timeout, and the one-call
 * connection of ctl_call(). Over TLS a connection does its handshake once
 * and then carries its calls in the one session. See client.h. */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/linebuf.h"
#include "server.h"
#include "tls.h"

struct ctl_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	uv_write_t write;
	struct linebuf in;     /* reply lines (over TLS: decrypted) */
	char *request;         /* the call in progress: its line, until answered */
	char cmd[CTL_CMD_MAX]; /* its command, for the gate */
	char address[64];      /* the address dialled, for the gate */
	ctl_call_cb cb;        /* the call in progress; NULL: none */
	void *userdata;
	/* Over TLS: the session and the bytes off the wire. */
	struct ctl_tls *tls;
	struct ctl_tls_session *session;
	struct linebuf raw;
	int handles;
	bool connected; /* TCP is up (and over TLS, the handshake is done) */
	bool sent;
	bool broken; /* a call failed: the connection carries no more calls */
	bool closing;
	bool once; /* ctl_call(): closed after its one call */
};

static void conn_free_cb(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;
	if (--c->handles > 0)
		return;
	free(c->request);
	linebuf_free(&c->in);
	linebuf_free(&c->raw);
	ctl_tls_session_free(c->session);
	free(c);
}

void ctl_conn_close(struct ctl_conn *c);

/* Ends the call in progress. A failed call leaves the connection in a
 * state nobody knows (a late reply would answer the next call): it is
 * broken. */
static void finish(struct ctl_conn *c, int status, json_t *result, const char *error)
{
	ctl_call_cb cb = c->cb;
	if (!cb)
		return;
	c->cb = NULL;
	free(c->request);
	c->request = NULL;
	c->sent = false;
	uv_timer_stop(&c->timer);
	if (status < 0 && status != -EREMOTEIO && status != -EACCES)
		c->broken = true; /* the gate's -EACCES sent nothing */
	cb(c->userdata, status, result, error);
	if (c->once)
		ctl_conn_close(c);
}

static void fail_errno(struct ctl_conn *c, int status, const char *what)
{
	char error[160];
	c->broken = true;
	snprintf(error, sizeof(error), "%s: %s", what, uv_strerror(status));
	finish(c, status, NULL, error);
}

static void timeout_cb(uv_timer_t *t)
{
	finish(t->data, -ETIMEDOUT, NULL, "no answer in time");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_conn *c = h->data;
	(void)suggested;
	linebuf_alloc(c->session ? &c->raw : &c->in, buf);
}

/* One reply line: the answer to the call in progress. */
static void reply_line(struct ctl_conn *c, const char *line, size_t len)
{
	bool ok;
	json_t *result = NULL;
	char *reason = NULL, *error = NULL;
	if (!c->cb || !c->sent) {
		/* Nobody asked: the peer does not speak the protocol. */
		c->broken = true;
		return;
	}
	if (ctl_reply_parse(line, len, &ok, &result, &reason, &error) < 0) {
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

/* Answers the calls whose reply lines c->in holds. */
static void take_replies(struct ctl_conn *c)
{
	char *nl;
	while (!c->closing && (nl = memchr(c->in.data, '\n', c->in.len))) {
		size_t len = (size_t)(nl - c->in.data);
		/* Parsed before it is consumed: the callback may start the
		 * next call, which reads into the same buffer. */
		char *line = strndup(c->in.data, len);
		linebuf_consume(&c->in, len + 1);
		if (!line) {
			finish(c, -ENOMEM, NULL, "out of memory");
			return;
		}
		reply_line(c, line, len);
		free(line);
	}
	if (!c->closing && c->in.len > CTL_LINE_MAX * 16)
		finish(c, -EBADMSG, NULL, "reply too long");
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *c = s->data;
	(void)buf;
	if (c->closing)
		return;
	if (nread < 0) {
		c->broken = true;
		fail_errno(c, (int)nread, "connection closed before the reply");
		return;
	}
	if (!c->session) {
		c->in.len += (size_t)nread;
		take_replies(c);
		return;
	}
	c->raw.len += (size_t)nread;
	char *error = NULL;
	int r = ctl_tls_session_feed(c->session, (const uint8_t *)c->raw.data, c->raw.len, &error);
	linebuf_consume(&c->raw, c->raw.len);
	if (r < 0 && !c->closing) {
		c->broken = true;
		finish(c, r, NULL, error ? error : "TLS: the peer closed the session");
	}
	free(error);
}

static void write_cb(uv_write_t *w, int status)
{
	struct ctl_conn *c = w->data;
	if (status < 0 && !c->closing)
		fail_errno(c, status, "send");
}

/* Sends the call in progress. Over TLS the request goes only to a peer
 * the gate lets this call's command speak with: -EACCES, with *ret_error,
 * when it does not. */
static int send_request(struct ctl_conn *c, char **ret_error)
{
	if (!c->session) {
		c->sent = true;
		uv_buf_t buf = uv_buf_init(c->request, (unsigned)strlen(c->request));
		c->write.data = c;
		return uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
	}
	char host[CTL_PEER_HOST_MAX];
	int r = ctl_tls_check(c->tls, ctl_tls_session_peer_fp(c->session),
	                      ctl_tls_session_peer_ca(c->session), c->cmd, c->address, host,
	                      sizeof(host), ret_error);
	if (r < 0)
		return r;
	c->sent = true;
	return ctl_tls_session_write(c->session, c->request, strlen(c->request));
}

struct tls_write {
	uv_write_t req;
	struct ctl_conn *conn;
	char data[];
};

static void tls_write_cb(uv_write_t *w, int status)
{
	struct tls_write *t = (struct tls_write *)w;
	if (status < 0 && status != UV_ECANCELED && !t->conn->closing)
		fail_errno(t->conn, status, "send");
	free(t);
}

static void tls_send(void *userdata, const uint8_t *data, size_t len)
{
	struct ctl_conn *c = userdata;
	if (c->closing)
		return;
	struct tls_write *t = malloc(sizeof(*t) + len);
	if (!t) {
		c->broken = true;
		finish(c, -ENOMEM, NULL, "out of memory");
		return;
	}
	t->conn = c;
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
	struct ctl_conn *c = userdata;
	if (c->closing)
		return;
	if (linebuf_append(&c->in, data, len) < 0) {
		c->broken = true;
		finish(c, -ENOMEM, NULL, "out of memory");
		return;
	}
	take_replies(c);
}

/* The handshake is done: the connection carries calls from now on, the
 * one waiting first. */
static void tls_ready(void *userdata)
{
	struct ctl_conn *c = userdata;
	if (c->closing)
		return;
	c->connected = true;
	if (!c->cb)
		return;
	char *error = NULL;
	int r = send_request(c, &error);
	if (r < 0)
		finish(c, r, NULL, error ? error : "TLS: cannot send the request");
	free(error);
}

static const struct ctl_tls_io tls_io = {tls_send, tls_plain, tls_ready};

static void connect_cb(uv_connect_t *req, int status)
{
	struct ctl_conn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		c->broken = true;
		fail_errno(c, status, "connect");
		return;
	}
	int r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (r < 0) {
		fail_errno(c, r, "receive");
		return;
	}
	if (c->session) {
		char *error = NULL;
		if (ctl_tls_session_start(c->session, &error) < 0) {
			c->broken = true;
			finish(c, -EPROTO, NULL, error ? error : "TLS: cannot start");
		}
		free(error);
		return;
	}
	c->connected = true;
	if (c->cb && (r = send_request(c, NULL)) < 0) /* plaintext: no gate */
		fail_errno(c, r, "send");
}

int ctl_conn_open(uv_loop_t *loop, const char *address, struct ctl_conn **ret_conn)
{
	struct sockaddr_in sa;
	if (ctl_parse_address(address, &sa) < 0)
		return -EINVAL;
	struct ctl_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(c->address, sizeof(c->address), "%s", address);
	c->tls = ctl_tls_default();
	if (c->tls && ctl_tls_session_new(c->tls, false, &tls_io, c, &c->session) < 0) {
		free(c);
		return -ENOMEM;
	}
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c->connect.data = c;
	c->handles = 2;
	uv_tcp_nodelay(&c->tcp, 1);
	int r = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa, connect_cb);
	if (r < 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->timer, conn_free_cb);
		uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
		return r;
	}
	*ret_conn = c;
	return 0;
}

int ctl_conn_call(struct ctl_conn *c, const char *cmd, json_t *args, unsigned timeout_ms,
                  ctl_call_cb cb, void *userdata)
{
	if (c->closing || c->broken || c->cb) {
		json_decref(args);
		return c->cb ? -EBUSY : -ENOTCONN;
	}
	c->request = ctl_request_encode(1, cmd, args);
	if (!c->request)
		return -ENOMEM;
	snprintf(c->cmd, sizeof(c->cmd), "%s", cmd);
	c->cb = cb;
	c->userdata = userdata;
	uv_timer_start(&c->timer, timeout_cb, timeout_ms, 0);
	if (c->connected) {
		char *error = NULL;
		int r = send_request(c, &error);
		free(error);
		if (r < 0) {
			c->cb = NULL;
			free(c->request);
			c->request = NULL;
			c->sent = false;
			uv_timer_stop(&c->timer);
			if (r != -EACCES)
				c->broken = true;
			return r == -EACCES ? r : -ENOTCONN;
		}
	}
	return 0;
}

void ctl_conn_close(struct ctl_conn *c)
{
	if (!c || c->closing)
		return;
	c->once = false; /* finish() below must not close it again */
	finish(c, -ECANCELED, NULL, "the call was cancelled");
	c->closing = true;
	uv_close((uv_handle_t *)&c->timer, conn_free_cb);
	uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
}

int ctl_call(uv_loop_t *loop, const char *address, const char *cmd, json_t *args,
             unsigned timeout_ms, ctl_call_cb cb, void *userdata)
{
	struct ctl_conn *c;
	int r = ctl_conn_open(loop, address, &c);
	if (r < 0) {
		json_decref(args);
		return r;
	}
	r = ctl_conn_call(c, cmd, args, timeout_ms, cb, userdata);
	if (r < 0) {
		ctl_conn_close(c);
		return r;
	}
	c->once = true;
	return 0;
}
