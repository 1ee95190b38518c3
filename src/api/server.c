/* The control socket server: listening (unix or TCP), reading request lines
 * per client, dispatching to the handler, deferred replies. See server.h. */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "lib/linebuf.h"
#include "lib/log.h"
#include "tls.h"

/* Unread answers a client may leave queued before the server stops
 * reading its requests; it reads again once half of them are written. */
#define CTL_UNREAD_MAX (1u << 20)
/* How long a TLS client has to finish its handshake. */
#define CTL_HANDSHAKE_MS 5000

struct ctl_client {
	union {
		uv_pipe_t pipe;
		uv_tcp_t tcp;
		uv_stream_t stream;
	};
	struct ctl_server *server;
	struct ctl_client *next;
	struct linebuf in;
	uint64_t id;               /* unique among the connections of this process */
	struct sockaddr_in source; /* a TCP client's address; AF_UNSPEC on the unix socket */
	bool closing, closed;
	bool paused; /* not reading: CTL_UNREAD_MAX of answers unread */
	int handles; /* the stream, and the handshake timer of a TLS client */
	uv_timer_t handshake;
	int deferred; /* replies still owed; the client outlives its handle for them */
	/* A peer API client over TLS: the session, the bytes off the wire, and
	 * the host its key was admitted as at its last request ("": none). */
	struct ctl_tls *tls;
	struct ctl_tls_session *session;
	struct linebuf raw;
	char peer_host[CTL_PEER_HOST_MAX];
};

struct ctl_deferred {
	struct ctl_client *client;
	struct ctl_request req; /* only the id is kept */
};

struct write_req {
	uv_write_t req;
	char *line;
	struct ctl_client *client; /* alive: a close cancels the writes first */
};

static void handle_closed(struct ctl_server *s)
{
	if (--s->open_handles == 0 && s->close_cb)
		s->close_cb(s);
}

static void client_free(struct ctl_client *c)
{
	linebuf_free(&c->in);
	linebuf_free(&c->raw);
	ctl_tls_session_free(c->session);
	free(c);
}

const char *ctl_client_peer_host(const struct ctl_client *client)
{
	return client->peer_host[0] ? client->peer_host : NULL;
}

const char *ctl_client_peer_fp(const struct ctl_client *client)
{
	return client->session && ctl_tls_session_ready(client->session)
	           ? ctl_tls_session_peer_fp(client->session)
	           : NULL;
}

static void client_close_cb(uv_handle_t *h)
{
	struct ctl_client *c = h->data;
	struct ctl_server *s = c->server;
	if (--c->handles > 0)
		return;
	for (struct ctl_client **p = &s->clients; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	c->closed = true;
	if (c->deferred == 0)
		client_free(c);
	handle_closed(s);
}

static void client_close(struct ctl_client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->handles == 2)
		uv_close((uv_handle_t *)&c->handshake, client_close_cb);
	uv_close((uv_handle_t *)&c->stream, client_close_cb);
}

static void client_take_lines(struct ctl_client *c);

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct ctl_client *c = w->client;
	if (status < 0)
		log_debug("control: write failed: %s", uv_strerror(status));
	free(w->line);
	free(w);
	/* Half of what held the client up is written: hear it again. */
	if (!c->closing && c->paused && c->stream.write_queue_size <= CTL_UNREAD_MAX / 2) {
		c->paused = false;
		if (uv_read_start(&c->stream, alloc_cb, read_cb) < 0)
			client_close(c);
		else
			client_take_lines(c);
	}
}

/* Writes @len bytes of @data (stolen) to the client's stream. */
static void client_write(struct ctl_client *c, char *data, size_t len)
{
	struct write_req *w = calloc(1, sizeof(*w));
	if (!w) {
		free(data);
		return;
	}
	w->line = data;
	w->client = c;
	uv_buf_t buf = uv_buf_init(data, (unsigned)len);
	if (uv_write(&w->req, &c->stream, &buf, 1, write_cb) < 0) {
		free(data);
		free(w);
	}
}

static void client_send(struct ctl_client *c, char *line)
{
	if (!line)
		return;
	if (!c->session) {
		client_write(c, line, strlen(line));
		return;
	}
	if (ctl_tls_session_write(c->session, line, strlen(line)) < 0)
		client_close(c);
	free(line);
}

static void client_handle_line(struct ctl_client *c, const char *line, size_t len)
{
	struct ctl_request req;
	json_t *result = NULL;
	char *reason = NULL;

	int r = ctl_request_parse(line, len, &req, &reason);
	if (r < 0) {
		client_send(c, ctl_reply_encode(&req, NULL, reason ? reason : strerror(-r)));
		free(reason);
		return;
	}
	/* Over TLS, the gate decides per request: an admission may have
	 * come or gone since the last one. */
	if (c->session && (r = ctl_tls_check(c->tls, ctl_tls_session_peer_fp(c->session),
	                                     ctl_tls_session_peer_ca(c->session), req.cmd, NULL,
	                                     c->peer_host, sizeof(c->peer_host), &reason)) < 0) {
		if (c->server->refused)
			c->server->refused(c->server->userdata, c, &req, &reason);
		client_send(c, ctl_reply_encode(&req, NULL, reason ? reason : strerror(-r)));
		free(reason);
		ctl_request_done(&req);
		return;
	}
	r = c->server->handler(c->server->userdata, c, &req, &result, &reason);
	if (r == CTL_DEFERRED) {
		ctl_request_done(&req);
		return;
	}
	if (r < 0 && !reason)
		reason = strdup(strerror(-r));
	client_send(c, ctl_reply_encode(&req, result, r < 0 ? reason : NULL));
	free(reason);
	ctl_request_done(&req);
}

struct ctl_deferred *ctl_defer(struct ctl_client *client, const struct ctl_request *req)
{
	struct ctl_deferred *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->client = client;
	d->req.has_id = req->has_id;
	d->req.id = req->id;
	client->deferred++;
	return d;
}

void ctl_deferred_reply(struct ctl_deferred *d, json_t *result, const char *error)
{
	struct ctl_client *c = d->client;
	c->deferred--;
	if (c->closing || c->closed)
		json_decref(result);
	else
		client_send(c, ctl_reply_encode(&d->req, result, error));
	if (c->closed && c->deferred == 0)
		client_free(c);
	free(d);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_client *c = h->data;
	(void)suggested;
	linebuf_alloc(c->session ? &c->raw : &c->in, buf);
}

/* Handles the complete lines in c->in. */
static void client_take_lines(struct ctl_client *c)
{
	size_t start = 0;
	char *nl;
	while (!c->paused && (nl = memchr(c->in.data + start, '\n', c->in.len - start))) {
		/* A client that sends requests but does not read the answers
		 * is not heard until it does: its answers would pile up. */
		if (c->stream.write_queue_size > CTL_UNREAD_MAX) {
			c->paused = true;
			uv_read_stop(&c->stream);
			break;
		}
		client_handle_line(c, c->in.data + start, (size_t)(nl - (c->in.data + start)));
		start = (size_t)(nl - c->in.data) + 1;
	}
	linebuf_consume(&c->in, start);
	if (!c->paused && c->in.len > CTL_LINE_MAX) {
		char error[64];
		snprintf(error, sizeof(error), "request longer than %d bytes", CTL_LINE_MAX);
		client_send(c, ctl_reply_encode(NULL, NULL, error));
		uv_read_stop(&c->stream);
		client_close(c);
	}
}

static void tls_send(void *userdata, const uint8_t *data, size_t len)
{
	struct ctl_client *c = userdata;
	char *copy = malloc(len);
	if (!copy) {
		client_close(c);
		return;
	}
	memcpy(copy, data, len);
	client_write(c, copy, len);
}

static void tls_plain(void *userdata, const char *data, size_t len)
{
	struct ctl_client *c = userdata;
	if (c->closing)
		return;
	if (linebuf_append(&c->in, data, len) < 0) {
		client_close(c);
		return;
	}
	client_take_lines(c);
}

static void tls_ready(void *userdata)
{
	struct ctl_client *c = userdata;
	uv_timer_stop(&c->handshake);
}

static void handshake_late(uv_timer_t *t)
{
	struct ctl_client *c = t->data;
	log_debug("peer API: a TLS handshake not done in %d ms; closed", CTL_HANDSHAKE_MS);
	client_close(c);
}

static const struct ctl_tls_io tls_io = {tls_send, tls_plain, tls_ready};

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *c = stream->data;
	(void)buf;
	if (nread < 0) {
		client_close(c);
		return;
	}
	if (!c->session) {
		c->in.len += (size_t)nread;
		client_take_lines(c);
		return;
	}
	c->raw.len += (size_t)nread;
	char *error = NULL;
	int r = ctl_tls_session_feed(c->session, (const uint8_t *)c->raw.data, c->raw.len, &error);
	linebuf_consume(&c->raw, c->raw.len);
	if (r < 0) {
		if (r != -ECONNRESET)
			log_debug("peer API: %s", error ? error : strerror(-r));
		free(error);
		client_close(c);
	}
}

static void connection_cb(uv_stream_t *listener, int status)
{
	struct ctl_server *s = listener->data;
	if (status < 0) {
		log_warn("control: accept failed: %s", uv_strerror(status));
		return;
	}
	struct ctl_client *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->server = s;
	if (s->is_tcp)
		uv_tcp_init(s->loop, &c->tcp);
	else
		uv_pipe_init(s->loop, &c->pipe, 0);
	if (s->tls) {
		c->tls = s->tls;
		if (ctl_tls_session_new(s->tls, true, &tls_io, c, &c->session) < 0)
			c->session = NULL; /* refused below */
	}
	c->stream.data = c;
	c->handles = 1;
	if (c->session) {
		uv_timer_init(s->loop, &c->handshake);
		c->handshake.data = c;
		c->handles = 2;
		uv_timer_start(&c->handshake, handshake_late, CTL_HANDSHAKE_MS, 0);
	}
	static uint64_t next_id;
	c->id = ++next_id;
	c->next = s->clients;
	s->clients = c;
	s->open_handles++;
	if ((s->tls && !c->session) || uv_accept(listener, &c->stream) < 0) {
		client_close(c);
		return;
	}
	if (s->is_tcp) {
		struct sockaddr_storage ss;
		int len = sizeof(ss);
		if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 &&
		    ss.ss_family == AF_INET)
			memcpy(&c->source, &ss, sizeof(c->source));
	}
	if (uv_read_start(&c->stream, alloc_cb, read_cb) < 0)
		client_close(c);
}

uint64_t ctl_client_id(const struct ctl_client *client)
{
	return client->id;
}

int ctl_client_source(const struct ctl_client *client, struct in_addr *ret_addr)
{
	if (client->source.sin_family != AF_INET)
		return -ENOTCONN;
	*ret_addr = client->source.sin_addr;
	return 0;
}

/* True when an agent answers on @path. */
static bool socket_is_live(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

int ctl_server_start(struct ctl_server *server, uv_loop_t *loop, const char *path,
                     ctl_handler_fn handler, void *userdata)
{
	*server = (struct ctl_server){.loop = loop, .handler = handler, .userdata = userdata};
	if (strlen(path) >= sizeof(server->path))
		return -ENAMETOOLONG;
	strcpy(server->path, path);

	if (socket_is_live(path))
		return -EADDRINUSE;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;

	int r = uv_pipe_init(loop, &server->pipe, 0);
	if (r < 0)
		return r;
	server->pipe.data = server;
	server->open_handles = 1;
	mode_t old = umask(0077);
	r = uv_pipe_bind(&server->pipe, path);
	umask(old);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&server->pipe, 16, connection_cb);
	if (r < 0) {
		uv_close((uv_handle_t *)&server->pipe, NULL);
		return r;
	}
	return 0;
}

int ctl_parse_address(const char *address, struct sockaddr_in *ret_sa)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(address, ':');
	char *end;
	if (!colon || (size_t)(colon - address) >= sizeof(host))
		return -EINVAL;
	memcpy(host, address, (size_t)(colon - address));
	host[colon - address] = '\0';
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port == 0 || port > 65535)
		return -EINVAL;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	*ret_sa = sa;
	return 0;
}

int ctl_server_start_tcp(struct ctl_server *server, uv_loop_t *loop, const char *address,
                         ctl_handler_fn handler, void *userdata)
{
	struct sockaddr_in sa;
	*server = (struct ctl_server){.loop = loop, .handler = handler, .userdata = userdata};
	server->is_tcp = true;
	server->tls = ctl_tls_default();
	int r = ctl_parse_address(address, &sa);
	if (r < 0)
		return r;
	r = uv_tcp_init(loop, &server->tcp);
	if (r < 0)
		return r;
	server->tcp.data = server;
	server->open_handles = 1;
	r = uv_tcp_bind(&server->tcp, (struct sockaddr *)&sa, 0);
	if (r == 0)
		r = uv_listen(&server->stream, 64, connection_cb);
	if (r < 0) {
		uv_close((uv_handle_t *)&server->tcp, NULL);
		return r;
	}
	return 0;
}

static void listener_close_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

void ctl_server_close(struct ctl_server *server, void (*close_cb)(struct ctl_server *server))
{
	server->close_cb = close_cb;
	for (struct ctl_client *c = server->clients; c; c = c->next)
		client_close(c);
	if (!server->is_tcp)
		unlink(server->path);
	uv_close((uv_handle_t *)&server->stream, listener_close_cb);
}
