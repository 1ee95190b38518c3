/* Mutual TLS 1.3 under Raft: a TLS session over a TCP stream, joined to a
 * socketpair whose other end libraft reads and writes. See tlsproxy.h. */
#include "tlsproxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <raft.h>

#include "api/tls.h"
#include "lib/clock.h"
#include "lib/log.h"

#define HANDSHAKE_MS 1000
#define READ_MAX     65536

struct tls_proxy {
	uv_loop_t *loop;
	uv_stream_t *tcp; /* libraft's, ours now: freed with raft_free() */
	uv_pipe_t inner;  /* our end of the socketpair */
	uv_timer_t timer; /* the handshake's deadline */
	struct ctl_tls_session *session;
	uint64_t raft_id;
	bool server;
	char fp[CTL_TLS_FP_LEN];
	tls_proxy_check_fn check;
	void *check_userdata;
	tls_proxy_ready_fn ready;
	void *ready_userdata;
	struct tls_proxy **head, *next;
	bool inner_open, handed, closing;
	bool inner_paused, tcp_paused; /* not read: the other side's queue is full */
	int handles;
	char tcp_buf[READ_MAX], inner_buf[READ_MAX];
};

struct proxy_write {
	uv_write_t req;
	char data[];
};

static void unlink_proxy(struct tls_proxy *p)
{
	for (struct tls_proxy **q = p->head; q && *q; q = &(*q)->next)
		if (*q == p) {
			*q = p->next;
			break;
		}
	p->head = NULL;
}

static void handle_closed(struct tls_proxy *p)
{
	if (--p->handles > 0)
		return;
	ctl_tls_session_free(p->session);
	free(p);
}

static void tcp_closed_cb(uv_handle_t *h)
{
	struct tls_proxy *p = h->data;
	raft_free(h);
	handle_closed(p);
}

static void proxy_handle_closed_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

/* Ends the proxy; before the handshake is done, tells @ready why. */
static void proxy_close(struct tls_proxy *p, int status)
{
	if (p->closing)
		return;
	p->closing = true;
	unlink_proxy(p);
	if (!p->handed && p->ready)
		p->ready(p->ready_userdata, NULL, status);
	p->handed = true;
	uv_close((uv_handle_t *)p->tcp, tcp_closed_cb);
	uv_close((uv_handle_t *)&p->timer, proxy_handle_closed_cb);
	if (p->inner_open)
		uv_close((uv_handle_t *)&p->inner, proxy_handle_closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void inner_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* What one side may have queued, unwritten, before the proxy stops reading
 * the other (a peer that does not read, a libraft that is busy); it reads
 * again once half is written. libraft bounds its own sends, but the proxy
 * drains its socketpair at once, so without this the bound was lost. */
#define PROXY_QUEUE_MAX (4u << 20)

static void resume(struct tls_proxy *p)
{
	if (p->closing)
		return;
	if (p->inner_paused && p->tcp->write_queue_size <= PROXY_QUEUE_MAX / 2) {
		p->inner_paused = false;
		if (uv_read_start((uv_stream_t *)&p->inner, alloc_cb, inner_read_cb) < 0)
			proxy_close(p, RAFT_NOCONNECTION);
	}
	if (p->tcp_paused && p->inner.write_queue_size <= PROXY_QUEUE_MAX / 2) {
		p->tcp_paused = false;
		if (uv_read_start(p->tcp, alloc_cb, tcp_read_cb) < 0)
			proxy_close(p, RAFT_NOCONNECTION);
	}
}

static void write_cb(uv_write_t *req, int status)
{
	struct proxy_write *w = (struct proxy_write *)req;
	struct tls_proxy *p = req->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		proxy_close(p, RAFT_NOCONNECTION);
	else
		resume(p);
}

/* Writes a copy of @len bytes to @stream. */
static void forward(struct tls_proxy *p, uv_stream_t *stream, const void *data, size_t len)
{
	if (p->closing)
		return;
	struct proxy_write *w = malloc(sizeof(*w) + len);
	if (!w) {
		proxy_close(p, RAFT_NOMEM);
		return;
	}
	memcpy(w->data, data, len);
	w->req.data = p;
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, stream, &buf, 1, write_cb) < 0) {
		free(w);
		proxy_close(p, RAFT_NOCONNECTION);
		return;
	}
	if (stream->write_queue_size <= PROXY_QUEUE_MAX)
		return;
	if (stream == p->tcp && p->inner_open && !p->inner_paused) {
		p->inner_paused = true;
		uv_read_stop((uv_stream_t *)&p->inner);
	} else if (stream != p->tcp && !p->tcp_paused) {
		p->tcp_paused = true;
		uv_read_stop(p->tcp);
	}
}

static void tls_send(void *userdata, const uint8_t *data, size_t len)
{
	struct tls_proxy *p = userdata;
	forward(p, p->tcp, data, len);
}

static void tls_plain(void *userdata, const char *data, size_t len)
{
	struct tls_proxy *p = userdata;
	if (p->inner_open)
		forward(p, (uv_stream_t *)&p->inner, data, len);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tls_proxy *p = h->data;
	(void)suggested;
	char *b = h == (uv_handle_t *)p->tcp ? p->tcp_buf : p->inner_buf;
	*buf = uv_buf_init(b, READ_MAX);
}

/* Raft's bytes, to encrypt. */
static void inner_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct tls_proxy *p = s->data;
	if (n < 0) {
		proxy_close(p, RAFT_NOCONNECTION);
		return;
	}
	if (n > 0 && ctl_tls_session_write(p->session, buf->base, (size_t)n) < 0)
		proxy_close(p, RAFT_NOCONNECTION);
}

/* The socketpair: ours in p->inner, libraft's returned. */
static uv_stream_t *make_pair(struct tls_proxy *p)
{
	int fds[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
		return NULL;
	uv_pipe_t *outer = raft_malloc(sizeof(*outer));
	if (!outer) {
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	uv_pipe_init(p->loop, &p->inner, 0);
	p->inner.data = p;
	p->inner_open = true;
	p->handles++;
	uv_pipe_init(p->loop, outer, 0);
	/* Each fd is closed once: by its handle once opened into it, by hand
	 * before. */
	bool inner_ok = uv_pipe_open(&p->inner, fds[0]) == 0;
	bool outer_ok = inner_ok && uv_pipe_open(outer, fds[1]) == 0;
	if (!outer_ok || uv_read_start((uv_stream_t *)&p->inner, alloc_cb, inner_read_cb) < 0) {
		if (!inner_ok)
			close(fds[0]);
		if (!outer_ok)
			close(fds[1]);
		uv_close((uv_handle_t *)outer, (uv_close_cb)raft_free);
		return NULL;
	}
	return (uv_stream_t *)outer;
}

/* Refusals are logged once a minute per server id (libraft tries again
 * every heartbeat); ids that share a slot share the limit. */
#define REFUSALS_LOG_MS 60000
static struct log_ratelimit refusals_log[32];

/* The handshake is done: the key must be the one of the server id. */
static void tls_ready(void *userdata)
{
	struct tls_proxy *p = userdata;
	char *error = NULL;
	snprintf(p->fp, sizeof(p->fp), "%s", ctl_tls_session_peer_fp(p->session));
	if (p->check && p->check(p->check_userdata, p->fp, p->raft_id, &error) < 0) {
		log_warn_limited(&refusals_log[p->raft_id % 32], mono_ms(), REFUSALS_LOG_MS,
		                 "store: Raft connection %s server %llu refused: %s",
		                 p->server ? "from" : "to", (unsigned long long)p->raft_id,
		                 error ? error : "out of memory");
		free(error);
		proxy_close(p, RAFT_NOCONNECTION);
		return;
	}
	uv_stream_t *outer = make_pair(p);
	if (!outer) {
		proxy_close(p, RAFT_NOCONNECTION);
		return;
	}
	uv_timer_stop(&p->timer);
	p->handed = true;
	p->ready(p->ready_userdata, outer, 0);
}

static const struct ctl_tls_io proxy_io = {tls_send, tls_plain, tls_ready};

/* TLS records from the peer. */
static void tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct tls_proxy *p = s->data;
	char *error = NULL;
	if (n < 0) {
		proxy_close(p, RAFT_NOCONNECTION);
		return;
	}
	int r = ctl_tls_session_feed(p->session, (const uint8_t *)buf->base, (size_t)n, &error);
	if (r < 0) {
		if (r != -ECONNRESET)
			log_debug("store: Raft connection, server %llu: %s",
			          (unsigned long long)p->raft_id, error ? error : "TLS failed");
		proxy_close(p, RAFT_NOCONNECTION);
	}
	free(error);
}

static void timeout_cb(uv_timer_t *t)
{
	struct tls_proxy *p = t->data;
	log_debug("store: Raft connection, server %llu: no TLS handshake within %d ms",
	          (unsigned long long)p->raft_id, HANDSHAKE_MS);
	proxy_close(p, RAFT_NOCONNECTION);
}

int tls_proxy_start(uv_loop_t *loop, struct ctl_tls *tls, uv_stream_t *tcp, bool server,
                    uint64_t raft_id, tls_proxy_check_fn check, void *check_userdata,
                    tls_proxy_ready_fn ready, void *ready_userdata, struct tls_proxy **head)
{
	struct tls_proxy *p = calloc(1, sizeof(*p));
	if (!p || ctl_tls_session_new(tls, server, &proxy_io, p, &p->session) < 0) {
		free(p);
		uv_close((uv_handle_t *)tcp, (uv_close_cb)raft_free);
		return -ENOMEM;
	}
	*p = (struct tls_proxy){.loop = loop,
	                        .tcp = tcp,
	                        .session = p->session,
	                        .raft_id = raft_id,
	                        .server = server,
	                        .check = check,
	                        .check_userdata = check_userdata,
	                        .ready = ready,
	                        .ready_userdata = ready_userdata,
	                        .head = head,
	                        .next = *head,
	                        .handles = 2};
	*head = p;
	tcp->data = p;
	/* One Raft message becomes several TLS records, each its own write:
	 * Nagle's algorithm would hold the later ones back for an ACK. */
	if (tcp->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)tcp, 1);
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, timeout_cb, HANDSHAKE_MS, 0);
	char *error = NULL;
	if (uv_read_start(tcp, alloc_cb, tcp_read_cb) < 0 ||
	    ctl_tls_session_start(p->session, &error) < 0) {
		free(error);
		/* @ready runs from the loop, not from inside this call. */
		uv_timer_start(&p->timer, timeout_cb, 0, 0);
	}
	return 0;
}

int tls_proxy_recheck(struct tls_proxy **head)
{
	int closed = 0;
	struct tls_proxy *p = *head, *next;
	for (; p; p = next) {
		next = p->next;
		char *error = NULL;
		if (!p->handed || !p->check ||
		    p->check(p->check_userdata, p->fp, p->raft_id, &error) == 0)
			continue;
		log_warn("store: closing the Raft connection of server %llu: %s",
		         (unsigned long long)p->raft_id, error ? error : "out of memory");
		free(error);
		proxy_close(p, RAFT_NOCONNECTION);
		closed++;
	}
	return closed;
}

static bool listed(uint64_t id, const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

void tls_proxy_pump(struct tls_proxy **head, const uint64_t *ids, size_t n_ids)
{
	struct tls_proxy *p = *head, *next;
	char buf[16384];
	for (; p; p = next) {
		next = p->next;
		uv_os_fd_t fd;
		if (!listed(p->raft_id, ids, n_ids))
			continue;
		/* libraft's connections carry data one way: it writes on those
		 * it dialled, and only reads those it accepted. */
		if (p->server || !p->handed || p->closing || !p->inner_open || p->inner_paused ||
		    uv_fileno((uv_handle_t *)&p->inner, &fd) < 0)
			continue;
		for (;;) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n > 0 && ctl_tls_session_write(p->session, buf, (size_t)n) == 0)
				continue;
			/* Nothing more now; the end and errors are the read
			 * callback's to see. */
			if (n > 0)
				proxy_close(p, RAFT_NOCONNECTION);
			break;
		}
	}
}

void tls_proxy_close_all(struct tls_proxy **head)
{
	while (*head)
		proxy_close(*head, RAFT_CANCELED);
}
