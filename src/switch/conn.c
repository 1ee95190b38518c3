/* OpenFlow connections (conn.h). */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "api/tls.h"
#include "lib/log.h"

#define RECONNECT_MS 1000
#define ECHO_MS      2000
#define DEAD_MS      6000
#define MAX_MSG      65535
#define WIRE_BUF     65536

struct pending {
	struct pending *next;
	uint32_t xid;
	of_reply_cb cb;
	void *userdata;
};

struct of_conn {
	uv_loop_t *loop;
	struct sockaddr_in sa;
	char address[64];
	const struct of_conn_ops *ops;
	void *userdata;

	/* TLS to the switch (docs/switch.md, "The OpenFlow channel"), or
	 * NULL: plain TCP. A session per connection, made at connect; what
	 * the switch sends is read into @wire and decrypted into @in. */
	struct ctl_tls *tls;
	struct ctl_tls_session *session;
	uint8_t *wire;
	bool broken; /* out of memory while decrypting: dropped after the feed */

	uv_tcp_t *tcp; /* NULL while disconnected */
	uv_connect_t connect;
	uv_timer_t timer; /* reconnect, or echo while up */
	bool up, closing;
	int open_handles; /* while closing: the timer, and the socket if any */
	uint32_t next_xid;
	uint64_t last_heard; /* uv_now() of the last message */
	uint8_t *in;
	size_t in_len, in_cap;
	struct pending *pending;
	/* A switch that keeps refusing or breaking the connection is logged
	 * once a minute, not at every reconnection. */
	struct log_ratelimit warn_log;
};

#define CONN_WARN_MS 60000

/* Logs a warning about @c at most once a minute. */
#define conn_warn(c, fmt, ...)                                                                     \
	log_warn_limited(&(c)->warn_log, uv_now((c)->loop), CONN_WARN_MS, "switch %s: " fmt,       \
	                 (c)->address, __VA_ARGS__)

static void start_connect(struct of_conn *c);
static void timer_cb(uv_timer_t *t);

bool of_conn_is_up(const struct of_conn *c)
{
	return c->up;
}

uint64_t of_conn_silent_ms(const struct of_conn *c)
{
	return c->up ? uv_now(c->loop) - c->last_heard : UINT64_MAX;
}

const char *of_conn_address(const struct of_conn *c)
{
	return c->address;
}

uint32_t of_conn_xid(struct of_conn *c)
{
	return ++c->next_xid;
}

static void fail_pending(struct of_conn *c)
{
	while (c->pending) {
		struct pending *p = c->pending;
		c->pending = p->next;
		p->cb(p->userdata, c, -ECONNRESET, NULL, 0, true);
		free(p);
	}
}

static void tcp_closed(uv_handle_t *h)
{
	free(h);
}

static void conn_unref(struct of_conn *c)
{
	if (--c->open_handles == 0) {
		free(c->wire);
		free(c->in);
		free(c);
	}
}

static void conn_free(uv_handle_t *h)
{
	conn_unref(h->data);
}

/* The socket of a connection being closed: a connect still under way
 * reports UV_ECANCELED to connect_cb (c->connect lives in @c) before this
 * runs, so @c goes only after both. */
static void last_tcp_closed(uv_handle_t *h)
{
	struct of_conn *c = h->data;
	free(h);
	conn_unref(c);
}

/* Drops the connection; reconnects unless the connection is being closed:
 * at once after a connection that was up, a second later after one that
 * never was (a switch that refuses this agent's certificate closes every
 * attempt, which must not become a loop). */
static void drop(struct of_conn *c, const char *why)
{
	bool was_up = c->up;
	ctl_tls_session_free(c->session);
	c->session = NULL;
	if (c->tcp) {
		uv_close((uv_handle_t *)c->tcp, tcp_closed);
		c->tcp = NULL;
	}
	c->up = false;
	c->in_len = 0;
	fail_pending(c);
	if (was_up && c->ops->down)
		c->ops->down(c->userdata, c, why);
	if (c->closing)
		return;
	if (was_up)
		start_connect(c);
	else
		uv_timer_start(&c->timer, timer_cb, RECONNECT_MS, 0);
}

struct write_req {
	uv_write_t req;
	uint8_t *data;
};

static void write_done(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	(void)status; /* a failed write also fails the read side */
	free(w->data);
	free(w);
}

/* Puts @len bytes at @data (taken, freed when written) on the socket. */
static int send_raw(struct of_conn *c, uint8_t *data, size_t len)
{
	struct write_req *w = malloc(sizeof(*w));
	if (!w) {
		free(data);
		return -ENOMEM;
	}
	w->data = data;
	uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
	int r = uv_write(&w->req, (uv_stream_t *)c->tcp, &buf, 1, write_done);
	if (r < 0) {
		free(data);
		free(w);
		return -EIO;
	}
	return 0;
}

int of_conn_send(struct of_conn *c, struct obuf *b, of_reply_cb cb, void *userdata)
{
	if (!c->tcp) {
		obuf_free(b);
		return -ENOTCONN;
	}
	if (of13_finish(b) < 0 || b->failed) {
		obuf_free(b);
		return -ENOMEM;
	}
	uint32_t xid = (uint32_t)b->data[4] << 24 | (uint32_t)b->data[5] << 16 |
	               (uint32_t)b->data[6] << 8 | b->data[7];
	struct pending *p = NULL;
	if (cb) {
		p = malloc(sizeof(*p));
		if (!p) {
			obuf_free(b);
			return -ENOMEM;
		}
		*p = (struct pending){.xid = xid, .cb = cb, .userdata = userdata};
	}
	uint8_t *data;
	size_t len;
	obuf_finish(b, &data, &len);
	int r;
	if (c->tls) {
		/* Nothing goes out before the handshake: the HELLO waits for it. */
		r = c->session ? ctl_tls_session_write(c->session, (const char *)data, len)
		               : -ENOTCONN;
		free(data);
	} else {
		r = send_raw(c, data, len);
	}
	if (r < 0) {
		free(p);
		return r;
	}
	if (p) {
		/* Appended, so replies to one xid keep their order. */
		struct pending **at = &c->pending;
		while (*at)
			at = &(*at)->next;
		*at = p;
	}
	return 0;
}

static void send_simple(struct of_conn *c, uint8_t type, uint32_t xid, const void *data, size_t len)
{
	struct obuf b = {0};
	of13_simple_encode(&b, type, xid, data, len);
	of_conn_send(c, &b, NULL, NULL);
}

/* Hands a reply to its request; false when no request waits for @xid. */
static bool deliver_reply(struct of_conn *c, const struct of13_header *h, const uint8_t *msg,
                          size_t len)
{
	struct pending **at = &c->pending;
	while (*at && (*at)->xid != h->xid)
		at = &(*at)->next;
	if (!*at)
		return false;
	struct pending *p = *at;
	bool last = true;
	if (h->type == OF13_MULTIPART_REPLY) {
		uint16_t type, flags;
		if (of13_multipart_decode(msg, len, &type, &flags) == OF13_OK)
			last = !(flags & OF13_MP_MORE);
	}
	int status = h->type == OF13_ERROR ? -EREMOTEIO : 0;
	if (last)
		*at = p->next;
	p->cb(p->userdata, c, status, msg, len, last);
	if (last)
		free(p);
	return true;
}

static void handle(struct of_conn *c, const uint8_t *msg, size_t len)
{
	struct of13_header h;
	enum of13_err e = of13_header_decode(msg, len, &h);
	if (e && !(e == OF13_ERR_BAD_VERSION && h.type == OF13_HELLO)) {
		conn_warn(c, "%s in a message of type %u; dropping the connection",
		          of13_err_string(e), h.type);
		drop(c, "malformed message");
		return;
	}
	c->last_heard = uv_now(c->loop);
	switch (h.type) {
	case OF13_HELLO: {
		struct of13_hello hello;
		if (of13_hello_decode(msg, len, &hello) != OF13_OK ||
		    (hello.version_bitmap
		         ? !of13_negotiate(1u << OF13_VERSION, hello.version_bitmap)
		         : h.version < OF13_VERSION)) {
			conn_warn(c, "%s", "does not speak OpenFlow 1.3");
			drop(c, "no common OpenFlow version");
			return;
		}
		send_simple(c, OF13_FEATURES_REQUEST, of_conn_xid(c), NULL, 0);
		return;
	}
	case OF13_ECHO_REQUEST:
		send_simple(c, OF13_ECHO_REPLY, h.xid, msg + OF13_HEADER_LEN,
		            len - OF13_HEADER_LEN);
		return;
	case OF13_ECHO_REPLY:
		return;
	case OF13_FEATURES_REPLY: {
		struct of13_features f;
		if (c->up || of13_features_decode(msg, len, &f) != OF13_OK)
			return;
		c->up = true;
		log_info("switch %s: connected, datapath %016llx", c->address,
		         (unsigned long long)f.datapath_id);
		c->ops->up(c->userdata, c, f.datapath_id);
		return;
	}
	default:
		if (!deliver_reply(c, &h, msg, len) && c->ops->message)
			c->ops->message(c->userdata, c, &h, msg, len);
	}
}

/* Room for @n more bytes after c->in_len (and as much again, so that
 * growth is not byte by byte). Returns false when memory ran out. */
static bool reserve_in(struct of_conn *c, size_t n)
{
	if (c->in_cap - c->in_len >= n)
		return true;
	size_t cap = c->in_len + 2 * n;
	uint8_t *in = realloc(c->in, cap);
	if (!in)
		return false;
	c->in = in;
	c->in_cap = cap;
	return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct of_conn *c = h->data;
	(void)suggested;
	if (c->tls)
		*buf = uv_buf_init((char *)c->wire, WIRE_BUF);
	else if (reserve_in(c, 65536))
		*buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
	else
		*buf = uv_buf_init(NULL, 0);
}

/* Handles every whole message in c->in and keeps the rest. */
static void consume(struct of_conn *c)
{
	size_t at = 0;
	uv_tcp_t *tcp = c->tcp;
	while (c->tcp == tcp && c->in_len - at >= OF13_HEADER_LEN) {
		size_t len = (size_t)c->in[at + 2] << 8 | c->in[at + 3];
		if (len < OF13_HEADER_LEN) {
			drop(c, "a message shorter than its header");
			return;
		}
		if (c->in_len - at < len)
			break;
		handle(c, c->in + at, len);
		at += len;
	}
	if (c->tcp != tcp)
		return; /* dropped while handling */
	memmove(c->in, c->in + at, c->in_len - at);
	c->in_len -= at;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct of_conn *c = s->data;
	(void)buf;
	if (n < 0) {
		if (c->session && !ctl_tls_session_ready(c->session))
			conn_warn(c, "%s",
			          "closed the connection during the TLS handshake (does it "
			          "trust the CA that signed this agent's certificate?)");
		drop(c, n == UV_EOF ? "the switch closed the connection" : uv_strerror((int)n));
		return;
	}
	if (!c->tls) {
		c->in_len += (size_t)n;
		consume(c);
		return;
	}
	char *error = NULL;
	int r = ctl_tls_session_feed(c->session, c->wire, (size_t)n, &error);
	if (c->broken) {
		c->broken = false;
		free(error);
		drop(c, "out of memory");
		return;
	}
	if (r < 0) {
		if (r != -ECONNRESET)
			conn_warn(c, "%s", error ? error : "TLS failed");
		free(error);
		drop(c, r == -ECONNRESET ? "the switch closed the TLS session" : "TLS failed");
		return;
	}
	consume(c);
}

/* The TLS session's side (ctl_tls_io). */
static void tls_send(void *userdata, const uint8_t *data, size_t len)
{
	struct of_conn *c = userdata;
	uint8_t *copy = malloc(len);
	if (copy) {
		memcpy(copy, data, len);
		send_raw(c, copy, len);
	}
}

static void tls_plain(void *userdata, const char *data, size_t len)
{
	struct of_conn *c = userdata;
	if (!reserve_in(c, len)) {
		c->broken = true; /* the session is still in use: drop after */
		return;
	}
	memcpy(c->in + c->in_len, data, len);
	c->in_len += len;
}

static void send_hello(struct of_conn *c)
{
	struct obuf b = {0};
	of13_hello_encode(&b, of_conn_xid(c), &(struct of13_hello){1u << OF13_VERSION});
	of_conn_send(c, &b, NULL, NULL);
}

static void tls_ready(void *userdata)
{
	send_hello(userdata);
}

static const struct ctl_tls_io tls_io = {.send = tls_send, .plain = tls_plain, .ready = tls_ready};

static void timer_cb(uv_timer_t *t)
{
	struct of_conn *c = t->data;
	if (!c->tcp) {
		start_connect(c);
		return;
	}
	if (!c->up) {
		/* A switch that accepts the connection but never finishes the
		 * TLS or OpenFlow handshake is given up like a silent one. */
		if (uv_now(c->loop) - c->last_heard > DEAD_MS) {
			conn_warn(c, "no handshake in %u ms", DEAD_MS);
			drop(c, "handshake timeout");
		}
		return;
	}
	if (uv_now(c->loop) - c->last_heard > DEAD_MS) {
		conn_warn(c, "no answer for %u ms", DEAD_MS);
		drop(c, "echo timeout");
		return;
	}
	send_simple(c, OF13_ECHO_REQUEST, of_conn_xid(c), NULL, 0);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct of_conn *c = req->data;
	if (status == UV_ECANCELED)
		return;
	if (status < 0) {
		log_debug("switch %s: %s", c->address, uv_strerror(status));
		uv_close((uv_handle_t *)c->tcp, tcp_closed);
		c->tcp = NULL;
		uv_timer_start(&c->timer, timer_cb, RECONNECT_MS, 0);
		return;
	}
	uv_tcp_nodelay(c->tcp, 1);
	c->last_heard = uv_now(c->loop);
	uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb);
	uv_timer_start(&c->timer, timer_cb, ECHO_MS, ECHO_MS);
	if (!c->tls) {
		send_hello(c);
		return;
	}
	char ip[INET_ADDRSTRLEN], *error = NULL;
	inet_ntop(AF_INET, &c->sa.sin_addr, ip, sizeof(ip));
	int r = ctl_tls_session_new_switch(c->tls, ip, &tls_io, c, &c->session);
	if (r == 0 && (r = ctl_tls_session_start(c->session, &error)) < 0)
		conn_warn(c, "%s", error ? error : "TLS failed");
	free(error);
	if (r < 0)
		drop(c, "TLS failed");
}

static void start_connect(struct of_conn *c)
{
	uv_timer_stop(&c->timer);
	c->tcp = malloc(sizeof(*c->tcp));
	if (!c->tcp || uv_tcp_init(c->loop, c->tcp) < 0) {
		free(c->tcp);
		c->tcp = NULL;
		uv_timer_start(&c->timer, timer_cb, RECONNECT_MS, 0);
		return;
	}
	c->tcp->data = c;
	c->connect.data = c;
	if (uv_tcp_connect(&c->connect, c->tcp, (struct sockaddr *)&c->sa, connect_cb) < 0) {
		uv_close((uv_handle_t *)c->tcp, tcp_closed);
		c->tcp = NULL;
		uv_timer_start(&c->timer, timer_cb, RECONNECT_MS, 0);
	}
}

int of_conn_open(uv_loop_t *loop, const char *address, struct ctl_tls *tls,
                 const struct of_conn_ops *ops, void *userdata, struct of_conn **ret)
{
	struct of_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (tls && !(c->wire = malloc(WIRE_BUF))) {
		free(c);
		return -ENOMEM;
	}
	c->tls = tls;
	if (ctl_parse_address(address, &c->sa) < 0) {
		free(c->wire);
		free(c);
		return -EINVAL;
	}
	c->loop = loop;
	snprintf(c->address, sizeof(c->address), "%s", address);
	c->ops = ops;
	c->userdata = userdata;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	start_connect(c);
	*ret = c;
	return 0;
}

void of_conn_close(struct of_conn *c)
{
	c->closing = true;
	c->up = false;
	c->open_handles = 1;
	ctl_tls_session_free(c->session);
	c->session = NULL;
	if (c->tcp) {
		c->open_handles++;
		uv_close((uv_handle_t *)c->tcp, last_tcp_closed);
		c->tcp = NULL;
	}
	fail_pending(c);
	uv_close((uv_handle_t *)&c->timer, conn_free);
}
