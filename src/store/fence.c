/* The generation fence: a Raft transport that wraps libraft's TCP transport
 * and, on every new connection, exchanges the two hosts' cluster
 * generations before Raft sees a byte of it. Hosts of two different
 * generations never talk Raft: the one behind learns of the newer
 * generation (and rejoins it), and its messages, of a history that is over,
 * never reach the new generation's Raft (docs/store.md, "Fencing the old
 * generation"). A host that has no generation yet (a fresh replica) talks
 * to anyone.
 *
 * The exchange follows libraft's own handshake on the stream: the
 * connecting side sends FENCE_MAGIC and its generation, the accepting side
 * answers the same with its own; both apply the same rule to the pair, so
 * they agree on whether the stream goes to Raft.
 *
 * With the agent's TLS identity, what the exchange lets through then runs
 * a mutual TLS 1.3 handshake (tlsproxy.c): the accepting side judges the
 * key against the server id libraft's handshake claimed, the connecting
 * side against the id it dialled, and libraft gets the plaintext end of a
 * socketpair. libraft's handshake (protocol, id, address) and the
 * generation go before TLS and in clear: they carry no state, and a peer
 * that lies in them is caught by the key check, which binds the id. */
#include "fence.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "tlsproxy.h"

#define FENCE_MAGIC        0x4554544d47454e31ull /* "ETTMGEN1" */
#define FENCE_MSG          16
#define FENCE_HANDSHAKE_MS 1000

/* One exchange under way, on either side. */
struct fence_shake {
	struct fence *f;
	uv_stream_t *stream;
	uv_timer_t timer;
	uv_write_t write;
	uv_shutdown_t shutdown;
	bool writing;
	uint8_t out[FENCE_MSG], in[FENCE_MSG];
	size_t nread;
	int refs; /* the exchange, the timer, the write */
	bool outgoing;
	/* outgoing: raft's request; incoming: who connected */
	struct raft_uv_connect inner;
	struct raft_uv_connect *outer;
	raft_id id;
	char *address;
	struct fence_shake *next;
};

/* What the connection goes to once its TLS handshake is done. */
struct fence_pending {
	struct fence *f;
	bool outgoing;
	struct raft_uv_connect *outer;
	raft_id id;
	char *address;
};

/* libraft keeps its own pointer in the wrapper's data. */
static struct fence *fence_of(struct raft_uv_transport *t)
{
	return (struct fence *)((char *)t - offsetof(struct fence, t));
}

bool fence_admits(uint64_t mine, uint64_t theirs)
{
	return mine == 0 || theirs == 0 || mine == theirs;
}

static void shake_unref(struct fence_shake *h)
{
	if (--h->refs > 0)
		return;
	free(h->address);
	free(h);
}

static void shake_unlink(struct fence_shake *h)
{
	for (struct fence_shake **p = &h->f->shakes; *p; p = &(*p)->next)
		if (*p == h) {
			*p = h->next;
			return;
		}
}

static void stream_closed_cb(uv_handle_t *handle)
{
	raft_free(handle);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	(void)status;
	uv_close((uv_handle_t *)req->handle, stream_closed_cb);
	shake_unref(req->data);
}

/* A refused stream is closed once the answer is out, so that the host
 * behind learns of the newer generation. */
static void shake_close_stream(struct fence_shake *h)
{
	h->shutdown.data = h;
	if (h->writing && uv_shutdown(&h->shutdown, h->stream, shutdown_cb) == 0)
		h->refs++;
	else
		uv_close((uv_handle_t *)h->stream, stream_closed_cb);
}

static void timer_closed_cb(uv_handle_t *handle)
{
	shake_unref(handle->data);
}

static void tls_ready(void *userdata, uv_stream_t *stream, int status)
{
	struct fence_pending *p = userdata;
	struct fence *f = p->f;
	if (p->outgoing)
		p->outer->cb(p->outer, stream, status);
	else if (stream)
		f->accept_cb(&f->t, p->id, p->address, stream);
	free(p->address);
	free(p);
}

static int fence_tls_check(void *userdata, const char *fp, uint64_t raft_id, char **ret_error)
{
	struct fence *f = userdata;
	return f->check ? f->check(f->userdata, fp, raft_id, ret_error) : 0;
}

/* The exchange let the stream through: TLS next, then Raft. */
static void shake_tls(struct fence_shake *h)
{
	struct fence *f = h->f;
	struct fence_pending *p = calloc(1, sizeof(*p));
	if (p && !h->outgoing && !(p->address = strdup(h->address))) {
		free(p);
		p = NULL;
	}
	if (!p) {
		uv_close((uv_handle_t *)h->stream, stream_closed_cb);
		if (h->outgoing)
			h->outer->cb(h->outer, NULL, RAFT_NOMEM);
		return;
	}
	*p = (struct fence_pending){f, h->outgoing, h->outer, h->id, p->address};
	if (tls_proxy_start(f->loop, f->tls, h->stream, !h->outgoing, h->id, fence_tls_check, f,
	                    tls_ready, p, &f->proxies) < 0) {
		if (h->outgoing)
			h->outer->cb(h->outer, NULL, RAFT_NOMEM);
		free(p->address);
		free(p);
	}
}

/* Ends an exchange: hands the stream to Raft when @ok (through TLS when
 * there is an identity), closes it if not. */
static void shake_end(struct fence_shake *h, bool ok, int status)
{
	struct fence *f = h->f;
	shake_unlink(h);
	uv_read_stop(h->stream);
	uv_close((uv_handle_t *)&h->timer, timer_closed_cb);
	uv_stream_t *stream = h->stream;
	if (!ok) {
		shake_close_stream(h);
		stream = NULL;
	} else if (f->tls) {
		shake_tls(h);
		shake_unref(h);
		return;
	}
	if (h->outgoing)
		h->outer->cb(h->outer, stream, ok ? 0 : status);
	else if (ok)
		f->accept_cb(&f->t, h->id, h->address, stream);
	shake_unref(h);
}

static void shake_timeout_cb(uv_timer_t *t)
{
	shake_end(t->data, false, RAFT_NOCONNECTION);
}

static void write_cb(uv_write_t *w, int status)
{
	struct fence_shake *h = w->data;
	(void)status;
	h->writing = false;
	shake_unref(h);
}

static int shake_send(struct fence_shake *h)
{
	struct obuf b = {0};
	obuf_put_u64(&b, FENCE_MAGIC);
	obuf_put_u64(&b, h->f->generation(h->f->userdata));
	if (b.failed) {
		obuf_free(&b);
		return -ENOMEM;
	}
	memcpy(h->out, b.data, FENCE_MSG);
	obuf_free(&b);
	uv_buf_t buf = uv_buf_init((char *)h->out, FENCE_MSG);
	h->write.data = h;
	int r = uv_write(&h->write, h->stream, &buf, 1, write_cb);
	if (r == 0) {
		h->refs++;
		h->writing = true;
	}
	return r;
}

/* The other side's message is in: apply the rule. */
static void shake_decide(struct fence_shake *h)
{
	struct cursor c = cursor_init(h->in, FENCE_MSG);
	uint64_t magic = cursor_u64(&c), theirs = cursor_u64(&c);
	uint64_t mine = h->f->generation(h->f->userdata);
	if (magic != FENCE_MAGIC) {
		shake_end(h, false, RAFT_NOCONNECTION);
		return;
	}
	bool ok = fence_admits(mine, theirs);
	if (!h->outgoing && shake_send(h) != 0)
		ok = false;
	if (!ok && theirs > mine && h->f->newer)
		h->f->newer(h->f->userdata, theirs);
	shake_end(h, ok, RAFT_NOCONNECTION);
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct fence_shake *h = handle->data;
	(void)suggested;
	/* Exactly what is left of the message: what follows is Raft's. */
	*buf = uv_buf_init((char *)h->in + h->nread, (unsigned)(FENCE_MSG - h->nread));
}

static void read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct fence_shake *h = stream->data;
	(void)buf;
	if (n < 0) {
		shake_end(h, false, RAFT_NOCONNECTION);
		return;
	}
	h->nread += (size_t)n;
	if (h->nread == FENCE_MSG)
		shake_decide(h);
}

/* Starts an exchange on @stream; 0, or a negative errno (nothing started). */
static int shake_start(struct fence *f, struct fence_shake *h, uv_stream_t *stream)
{
	h->f = f;
	h->stream = stream;
	h->refs = 2; /* the exchange and the timer */
	stream->data = h;
	uv_timer_init(f->loop, &h->timer);
	h->timer.data = h;
	uv_timer_start(&h->timer, shake_timeout_cb, FENCE_HANDSHAKE_MS, 0);
	h->next = f->shakes;
	f->shakes = h;
	int r = h->outgoing ? shake_send(h) : 0;
	if (r == 0)
		r = uv_read_start(stream, alloc_cb, read_cb);
	return r;
}

static void fence_connected(struct raft_uv_connect *inner, uv_stream_t *stream, int status)
{
	struct fence_shake *h = inner->data;
	if (status != 0) {
		h->outer->cb(h->outer, NULL, status);
		free(h);
		return;
	}
	if (shake_start(h->f, h, stream) != 0)
		shake_end(h, false, RAFT_NOCONNECTION);
}

static int fence_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                         const char *address, raft_uv_connect_cb cb)
{
	struct fence *f = fence_of(t);
	struct fence_shake *h = calloc(1, sizeof(*h));
	if (!h)
		return RAFT_NOMEM;
	h->f = f;
	h->outgoing = true;
	h->id = id;
	h->outer = req;
	req->cb = cb;
	h->inner.data = h;
	int r = f->tcp.connect(&f->tcp, &h->inner, id, address, fence_connected);
	if (r != 0)
		free(h);
	return r;
}

static void fence_accepted(struct raft_uv_transport *tcp, raft_id id, const char *address,
                           uv_stream_t *stream)
{
	struct fence *f = tcp->data;
	struct fence_shake *h = calloc(1, sizeof(*h));
	if (h)
		h->address = strdup(address);
	if (!h || !h->address) {
		free(h);
		uv_close((uv_handle_t *)stream, stream_closed_cb);
		return;
	}
	h->id = id;
	if (shake_start(f, h, stream) != 0)
		shake_end(h, false, RAFT_NOCONNECTION);
}

static int fence_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
	struct fence *f = fence_of(t);
	return f->tcp.init(&f->tcp, id, address);
}

static int fence_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	struct fence *f = fence_of(t);
	f->accept_cb = cb;
	return f->tcp.listen(&f->tcp, fence_accepted);
}

static void fence_tcp_closed(struct raft_uv_transport *tcp)
{
	struct fence *f = tcp->data;
	f->close_cb(&f->t);
}

static void fence_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
	struct fence *f = fence_of(t);
	f->close_cb = cb;
	while (f->shakes)
		shake_end(f->shakes, false, RAFT_CANCELED);
	tls_proxy_close_all(&f->proxies);
	f->tcp.close(&f->tcp, fence_tcp_closed);
}

static void pump_check_cb(uv_check_t *h)
{
	fence_pump(h->data);
}

int fence_init_transport(struct fence *f, uv_loop_t *loop)
{
	int r = raft_uv_tcp_init(&f->tcp, loop);
	if (r != 0)
		return r;
	f->loop = loop;
	f->shakes = NULL;
	f->proxies = NULL;
	f->tls = NULL; /* plaintext until the owner gives an identity */
	f->check = NULL;
	f->pumped_ns = 0;
	f->voters = NULL;
	f->tcp.data = f;
	f->pump_check = malloc(sizeof(*f->pump_check));
	if (f->pump_check) {
		uv_check_init(loop, f->pump_check);
		f->pump_check->data = f;
		uv_check_start(f->pump_check, pump_check_cb);
		uv_unref((uv_handle_t *)f->pump_check);
	}
	f->t = (struct raft_uv_transport){.data = f,
	                                  .init = fence_init,
	                                  .listen = fence_listen,
	                                  .connect = fence_connect,
	                                  .close = fence_close};
	return 0;
}

int fence_recheck(struct fence *f)
{
	return tls_proxy_recheck(&f->proxies);
}

/* More voters than `store.voters` allows (7) exist only for a moment of a
 * membership change; beyond these, a voter's messages wait for the poll. */
#define PUMP_VOTERS_MAX 16

void fence_pump(struct fence *f)
{
	/* At most every 100 µs: a batch of entries applied at once needs one
	 * pump, not one per entry (each is a read per connection). */
	uint64_t now = uv_hrtime();
	if (!f->proxies || now - f->pumped_ns < 100000)
		return;
	f->pumped_ns = now;
	uint64_t ids[PUMP_VOTERS_MAX];
	size_t n = f->voters ? f->voters(f->userdata, ids, PUMP_VOTERS_MAX) : 0;
	tls_proxy_pump(&f->proxies, ids, n);
}

void fence_close_transport(struct fence *f)
{
	if (f->pump_check)
		uv_close((uv_handle_t *)f->pump_check, (uv_close_cb)free);
	f->pump_check = NULL;
	raft_uv_tcp_close(&f->tcp);
}
