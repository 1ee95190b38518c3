/* raft-sim: libraft 0.15 instances on simulated time, network and disk.
 *
 * libraft's own fixture (raft/fixture.h) holds at most 8 servers, so this
 * supplies its own in-memory struct raft_io, on the same principle: every
 * instance runs in this one thread, and a queue of timed events (ticks,
 * message deliveries, disk writes completing) drives them in simulated time.
 * Nothing sleeps: the same seed gives the same run, except for the CPU
 * figures, which are measured.
 *
 * The model (all figures simulated unless said otherwise; the options named
 * are raft-fanout's):
 * - network: every message pays its serialization on the sender's uplink and
 *   on the receiver's downlink (--link-mbit each, one FIFO per direction),
 *   plus --latency-us of propagation and switching. A message's size on the
 *   wire is libraft's TCP encoding (uv_encoding.c: a 16-byte preamble, the
 *   message's header, entry headers and payloads) plus a TLS 1.3 record
 *   header and tag (22 bytes per 16 KiB record) plus TCP/IPv4 with
 *   timestamps and Ethernet framing (90 bytes per 1448-byte segment): each
 *   follower has its own connection, so messages to different followers
 *   never share a segment.
 * - disk: each append completes --disk-us after it was asked, in order.
 * - CPU (measured, not simulated): the time spent in every call into a
 *   voter's raft instance (its ticks, receives, I/O callbacks and
 *   raft_apply), less the cost of reading the clock, calibrated at start-up.
 *   The clock is CLOCK_MONOTONIC: the CPU-time clocks are system calls of
 *   about 2 µs on this kind of machine (kvm-clock), more than most calls
 *   take, while this program is one thread that never waits, so its time in
 *   a call is CPU time unless the kernel runs something else meanwhile. Each
 *   phase also reads CLOCK_THREAD_CPUTIME_ID at its start and end: the
 *   share of the phase's wall time the thread did not run ("descheduled",
 *   printed) is taken out of the time in calls, pro rata; a figure with a
 *   large share is an estimate on a busy machine.
 *   It is libraft's own work plus this program's copy of each message sent
 *   (which stands for the encoding); it leaves out what a real transport
 *   adds per message (system calls, TLS encryption), so it is a lower bound.
 * - memory: a raft_heap counts each allocation against the instance that made
 *   it, until it is freed (by whichever instance): the leader's figure is its
 *   log, its progress array and the messages it sent that are still on the
 *   wire.
 */
#include "raft-sim.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Framing around each message on the wire (see the opening comment). */
#define TLS_RECORD_MAX      16384
#define TLS_RECORD_OVERHEAD 22 /* 5-byte header, 1-byte type, 16-byte tag */
#define TCP_MSS             1448
#define TCP_FRAME_OVERHEAD  90 /* Ethernet 38 with preamble and gap, IPv4 20, TCP 32 */
#define UV_PREAMBLE         16

enum ev_kind {
	EV_TICK,
	EV_DELIVER,
	EV_SEND_CB,
	EV_APPEND_CB,
	EV_SNAP_PUT_CB,
	EV_SNAP_GET_CB,
	EV_WORK
};

struct ev {
	uint64_t t, seq;
	enum ev_kind kind;
	unsigned node;
	void *p;
};

struct delivery {
	unsigned from;
	struct raft_message m;
};

struct snap_get {
	struct raft_io_snapshot_get *req;
	struct raft_snapshot *snapshot;
};

struct sim S;

void sim_die(const char *what)
{
	fprintf(stderr, "raft-fanout: %s\n", what);
	exit(1);
}

/* --- the heap accounting: a 16-byte header names the owner --- */

struct tag {
	int64_t owner;
	uint64_t size;
};

static void account(int64_t owner, int64_t delta)
{
	if (owner < 0)
		return;
	struct node *n = &S.nodes[owner];
	n->heap_live += delta;
	if (n->heap_live > n->heap_peak)
		n->heap_peak = n->heap_live;
}

static void *h_malloc(void *data, size_t size)
{
	(void)data;
	struct tag *t = malloc(sizeof(*t) + size);
	if (!t)
		return NULL;
	t->owner = S.current;
	t->size = size;
	account(t->owner, (int64_t)size);
	return t + 1;
}

static void h_free(void *data, void *ptr)
{
	(void)data;
	if (!ptr)
		return;
	struct tag *t = (struct tag *)ptr - 1;
	account(t->owner, -(int64_t)t->size);
	free(t);
}

static void *h_calloc(void *data, size_t nmemb, size_t size)
{
	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	void *p = h_malloc(data, nmemb * size);
	if (p)
		memset(p, 0, nmemb * size);
	return p;
}

static void *h_realloc(void *data, void *ptr, size_t size)
{
	if (!ptr)
		return h_malloc(data, size);
	struct tag *t = (struct tag *)ptr - 1;
	int64_t owner = t->owner;
	uint64_t old = t->size;
	struct tag *nt = realloc(t, sizeof(*nt) + size);
	if (!nt)
		return NULL;
	nt->size = size;
	account(owner, (int64_t)size - (int64_t)old);
	return nt + 1;
}

static void *h_aligned_alloc(void *data, size_t alignment, size_t size)
{
	(void)data;
	(void)alignment;
	(void)size;
	/* Only libraft's libuv I/O asks for aligned memory. */
	sim_die("raft_aligned_alloc is not expected with an in-memory raft_io");
	return NULL;
}

static void h_aligned_free(void *data, size_t alignment, void *ptr)
{
	(void)data;
	(void)alignment;
	(void)ptr;
	sim_die("raft_aligned_free is not expected with an in-memory raft_io");
}

struct raft_heap sim_heap = {
    .malloc = h_malloc,
    .free = h_free,
    .calloc = h_calloc,
    .realloc = h_realloc,
    .aligned_alloc = h_aligned_alloc,
    .aligned_free = h_aligned_free,
};

/* Every instance's log grows by each command (libraft keeps entries in
 * memory until a snapshot), so the heap of this one process grows by
 * members times the log, and each page it first touches is a page fault:
 * on a virtual machine those cost more than the calls measured, and land in
 * whichever call happened to touch the page (the leader's copies mostly).
 * One replica alone would grow by one log. So the heap is grown and touched
 * once before the run, in pieces below the mmap threshold, and kept: freed
 * memory is never given back to the kernel. */
void sim_prefault_heap(size_t bytes)
{
	enum { PIECE = 1 << 20 };
	size_t n = bytes / PIECE + 1;
	void **pieces = calloc(n, sizeof(*pieces));
	if (!pieces)
		sim_die("out of memory");
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, INT32_MAX);
	mallopt(M_TOP_PAD, 64 << 20);
	for (size_t i = 0; i < n; i++) {
		if (!(pieces[i] = malloc(PIECE)))
			sim_die("out of memory growing the heap");
		memset(pieces[i], 0, PIECE);
	}
	for (size_t i = 0; i < n; i++)
		free(pieces[i]);
	free(pieces);
}

/* --- CPU time around every call into an instance --- */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_now(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* A phase's wall and thread CPU time, to tell whether it was descheduled. */
struct sim_phase sim_phase_start(void)
{
	return (struct sim_phase){.wall0 = clock_ns(CLOCK_MONOTONIC),
	                          .cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID)};
}

double sim_phase_descheduled(struct sim_phase p)
{
	uint64_t wall = clock_ns(CLOCK_MONOTONIC) - p.wall0;
	uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - p.cpu0;
	return wall && cpu < wall ? 1.0 - (double)cpu / (double)wall : 0.0;
}

void sim_calibrate_clock(void)
{
	enum { ROUNDS = 20000 };
	uint64_t sum = 0;
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t a = cpu_now();
		uint64_t b = cpu_now();
		sum += b - a;
	}
	S.clock_cost_ns = sum / ROUNDS;
}

struct sim_call sim_enter(unsigned idx)
{
	struct sim_call c = {.prev = S.current, .t0 = 0};
	S.current = (int)idx;
	if (S.nodes[idx].timed)
		c.t0 = cpu_now();
	return c;
}

void sim_leave(unsigned idx, struct sim_call c)
{
	struct node *n = &S.nodes[idx];
	if (n->timed) {
		uint64_t d = cpu_now() - c.t0;
		n->c.cpu_ns += d > S.clock_cost_ns ? d - S.clock_cost_ns : 0;
		n->c.calls++;
	}
	S.current = c.prev;
}

/* --- the event queue: a binary heap ordered by (time, sequence) --- */

static bool ev_before(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void schedule(uint64_t t, enum ev_kind kind, unsigned node, void *p)
{
	if (S.heap_len == S.heap_cap) {
		S.heap_cap = S.heap_cap ? 2 * S.heap_cap : 4096;
		S.heap = realloc(S.heap, S.heap_cap * sizeof(*S.heap));
		if (!S.heap)
			sim_die("out of memory");
	}
	size_t i = S.heap_len++;
	struct ev e = {.t = t, .seq = S.seq++, .kind = kind, .node = node, .p = p};
	while (i > 0 && ev_before(&e, &S.heap[(i - 1) / 2])) {
		S.heap[i] = S.heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	S.heap[i] = e;
}

static struct ev pop(void)
{
	struct ev top = S.heap[0], last = S.heap[--S.heap_len];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= S.heap_len)
			break;
		if (c + 1 < S.heap_len && ev_before(&S.heap[c + 1], &S.heap[c]))
			c++;
		if (!ev_before(&S.heap[c], &last))
			break;
		S.heap[i] = S.heap[c];
		i = c;
	}
	if (S.heap_len)
		S.heap[i] = last;
	return top;
}

/* --- sizes on the wire --- */

static size_t conf_encoded_size(const struct raft_configuration *conf)
{
	size_t n = 1 + 8; /* format version, number of servers */
	for (unsigned i = 0; i < conf->n; i++)
		n += 8 + strlen(conf->servers[i].address) + 1 + 1;
	return (n + 7) / 8 * 8;
}

static size_t padded(size_t len)
{
	return (len + 7) / 8 * 8;
}

/* libraft's TCP encoding of the message (uv_encoding.c of 0.15). */
static size_t raft_bytes(const struct raft_message *m)
{
	size_t n = UV_PREAMBLE;
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		n += 6 * 8 + 16 * m->append_entries.n_entries;
		for (unsigned i = 0; i < m->append_entries.n_entries; i++)
			n += padded(m->append_entries.entries[i].buf.len);
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		n += 3 * 8;
		break;
	case RAFT_IO_REQUEST_VOTE:
		n += 5 * 8;
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		n += 3 * 8;
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		n += 7 * 8 + conf_encoded_size(&m->install_snapshot.conf) +
		     m->install_snapshot.data.len;
		break;
	case RAFT_IO_TIMEOUT_NOW:
		n += 3 * 8;
		break;
	}
	return n;
}

static size_t wire_bytes(size_t payload)
{
	size_t tls =
	    payload + TLS_RECORD_OVERHEAD * ((payload + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX);
	return tls + TCP_FRAME_OVERHEAD * ((tls + TCP_MSS - 1) / TCP_MSS);
}

static uint64_t serialize_ns(size_t wire)
{
	return (uint64_t)((double)wire * 8.0 * 1000.0 / S.p.link_mbit);
}

/* --- copies of what raft hands over (the receiver owns them) --- */

static void copy_conf(const struct raft_configuration *src, struct raft_configuration *dst)
{
	raft_configuration_init(dst);
	for (unsigned i = 0; i < src->n; i++)
		if (raft_configuration_add(dst, src->servers[i].id, src->servers[i].address,
		                           src->servers[i].role) != 0)
			sim_die("raft_configuration_add failed copying a configuration");
}

/* The entries in one batch, as libraft's own transports deliver them. */
static void copy_entries(const struct raft_entry *src, unsigned n, struct raft_entry **ret)
{
	if (n == 0) {
		*ret = NULL;
		return;
	}
	size_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += padded(src[i].buf.len);
	struct raft_entry *dst = raft_calloc(n, sizeof(*dst));
	uint8_t *batch = raft_malloc(total ? total : 8);
	if (!dst || !batch)
		sim_die("out of memory copying entries");
	uint8_t *cursor = batch;
	for (unsigned i = 0; i < n; i++) {
		dst[i].term = src[i].term;
		dst[i].type = src[i].type;
		dst[i].buf.base = cursor;
		dst[i].buf.len = src[i].buf.len;
		dst[i].batch = batch;
		memcpy(cursor, src[i].buf.base, src[i].buf.len);
		cursor += padded(src[i].buf.len);
	}
	*ret = dst;
}

static struct raft_snapshot *copy_snapshot(const struct raft_snapshot *src)
{
	struct raft_snapshot *dst = raft_calloc(1, sizeof(*dst));
	size_t len = 0;
	for (unsigned i = 0; i < src->n_bufs; i++)
		len += src->bufs[i].len;
	if (!dst || !(dst->bufs = raft_calloc(1, sizeof(*dst->bufs))) ||
	    !(dst->bufs[0].base = raft_malloc(len ? len : 1)))
		sim_die("out of memory copying a snapshot");
	dst->index = src->index;
	dst->term = src->term;
	copy_conf(&src->configuration, &dst->configuration);
	dst->configuration_index = src->configuration_index;
	dst->n_bufs = 1;
	dst->bufs[0].len = len;
	uint8_t *cursor = dst->bufs[0].base;
	for (unsigned i = 0; i < src->n_bufs; i++) {
		memcpy(cursor, src->bufs[i].base, src->bufs[i].len);
		cursor += src->bufs[i].len;
	}
	return dst;
}

static void free_snapshot(struct raft_snapshot *s)
{
	if (!s)
		return;
	raft_configuration_close(&s->configuration);
	for (unsigned i = 0; i < s->n_bufs; i++)
		raft_free(s->bufs[i].base);
	raft_free(s->bufs);
	raft_free(s);
}

/* --- struct raft_io --- */

static struct node *io_node(struct raft_io *io)
{
	return io->impl;
}

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
	(void)io;
	(void)id;
	(void)address;
	return 0;
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
	if (cb)
		cb(io);
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries[], size_t *n_entries)
{
	struct node *n = io_node(io);
	*term = n->term;
	*voted_for = n->vote;
	*snapshot = n->snapshot ? copy_snapshot(n->snapshot) : NULL;
	*start_index = n->snapshot ? n->snapshot->index + 1 : 1;
	*entries = NULL;
	*n_entries = 0;
	if (!n->snapshot && n->boot_conf.base) {
		struct raft_entry e = {.term = 1, .type = RAFT_CHANGE, .buf = n->boot_conf};
		copy_entries(&e, 1, entries);
		*n_entries = 1;
	}
	return 0;
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct node *n = io_node(io);
	n->tick_cb = tick;
	n->recv_cb = recv;
	/* Ticks of different instances are spread over the first interval, as
	 * hosts that started at different moments would be. */
	uint64_t interval = (uint64_t)msecs * 1000000u;
	schedule(S.now + 1 + S.rng % interval, EV_TICK, n->idx, (void *)(uintptr_t)msecs);
	S.rng = S.rng * 6364136223846793005u + 1442695040888963407u;
	return 0;
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	struct node *n = io_node(io);
	if (n->term != 0)
		return RAFT_CANTBOOTSTRAP;
	int r = raft_configuration_encode(conf, &n->boot_conf);
	if (r != 0)
		return r;
	n->term = 1;
	return 0;
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	(void)conf;
	snprintf(io->errmsg, sizeof(io->errmsg), "recover is not simulated");
	return RAFT_IOERR;
}

static int io_set_term(struct raft_io *io, raft_term term)
{
	struct node *n = io_node(io);
	n->term = term;
	n->vote = 0;
	return 0;
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
	io_node(io)->vote = server_id;
	return 0;
}

static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                   raft_io_send_cb cb)
{
	struct node *from = io_node(io);
	if (m->server_id == 0 || m->server_id > S.n) {
		snprintf(io->errmsg, sizeof(io->errmsg), "no server %llu",
		         (unsigned long long)m->server_id);
		return RAFT_NOCONNECTION;
	}
	unsigned to = (unsigned)m->server_id - 1;
	struct node *dst = &S.nodes[to];
	uint64_t c0 = from->timed ? cpu_now() : 0;
	struct delivery *d = raft_malloc(sizeof(*d));
	if (!d)
		return RAFT_NOMEM;
	d->from = from->idx;
	d->m = *m;
	if (m->type == RAFT_IO_APPEND_ENTRIES) {
		copy_entries(m->append_entries.entries, m->append_entries.n_entries,
		             &d->m.append_entries.entries);
	} else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
		copy_conf(&m->install_snapshot.conf, &d->m.install_snapshot.conf);
		d->m.install_snapshot.data.base = raft_malloc(m->install_snapshot.data.len + 1);
		if (!d->m.install_snapshot.data.base)
			sim_die("out of memory copying a snapshot message");
		memcpy(d->m.install_snapshot.data.base, m->install_snapshot.data.base,
		       m->install_snapshot.data.len);
	}
	size_t payload = raft_bytes(m), wire = wire_bytes(payload);
	uint64_t ser = serialize_ns(wire);
	uint64_t tx_start = from->tx_free > S.now ? from->tx_free : S.now;
	from->tx_free = tx_start + ser;
	/* The downlink of the receiver: its last bit arrives no earlier than the
	 * sender's last bit plus the latency, and after the previous message's. */
	uint64_t arrive = from->tx_free + (uint64_t)(S.p.latency_us * 1000.0);
	if (dst->rx_free + ser > arrive)
		arrive = dst->rx_free + ser;
	dst->rx_free = arrive;

	from->c.msgs_sent++;
	from->c.bytes_sent += payload;
	from->c.wire_sent += wire;
	dst->c.msgs_recv++;
	dst->c.wire_recv += wire;

	req->cb = cb;
	schedule(from->tx_free, EV_SEND_CB, from->idx, req);
	schedule(arrive, EV_DELIVER, to, d);
	if (from->timed)
		from->c.copy_ns += cpu_now() - c0;
	return 0;
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct node *nd = io_node(io);
	(void)entries;
	(void)n;
	/* Only load() reads the disk back, and no instance restarts within a
	 * run: the entries need not be kept, only the write's time. */
	uint64_t done = S.now + (uint64_t)(S.p.disk_us * 1000.0);
	if (done < nd->disk_done)
		done = nd->disk_done;
	nd->disk_done = done;
	req->cb = cb;
	schedule(done, EV_APPEND_CB, nd->idx, req);
	return 0;
}

static int io_truncate(struct raft_io *io, raft_index index)
{
	(void)io;
	(void)index;
	return 0;
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct node *n = io_node(io);
	(void)trailing;
	free_snapshot(n->snapshot);
	n->snapshot = copy_snapshot(snapshot);
	uint64_t done = S.now + (uint64_t)(S.p.disk_us * 1000.0);
	if (done < n->disk_done)
		done = n->disk_done;
	n->disk_done = done;
	req->cb = cb;
	schedule(done, EV_SNAP_PUT_CB, n->idx, req);
	return 0;
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{
	struct node *n = io_node(io);
	struct snap_get *g = malloc(sizeof(*g));
	if (!g)
		return RAFT_NOMEM;
	g->req = req;
	g->snapshot = n->snapshot ? copy_snapshot(n->snapshot) : NULL;
	req->cb = cb;
	schedule(S.now + (uint64_t)(S.p.disk_us * 1000.0), EV_SNAP_GET_CB, n->idx, g);
	return 0;
}

static raft_time io_time(struct raft_io *io)
{
	(void)io;
	return S.now / 1000000u;
}

static int io_random(struct raft_io *io, int min, int max)
{
	(void)io;
	S.rng = S.rng * 6364136223846793005u + 1442695040888963407u;
	if (max <= min)
		return min;
	return min + (int)((S.rng >> 33) % (uint64_t)(max - min + 1));
}

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req,
                         raft_io_async_work_cb cb)
{
	req->cb = cb;
	schedule(S.now, EV_WORK, io_node(io)->idx, req);
	return 0;
}

void sim_io_init(struct node *n)
{
	n->io = (struct raft_io){
	    .version = 2,
	    .impl = n,
	    .init = io_init,
	    .close = io_close,
	    .load = io_load,
	    .start = io_start,
	    .bootstrap = io_bootstrap,
	    .recover = io_recover,
	    .set_term = io_set_term,
	    .set_vote = io_set_vote,
	    .send = io_send,
	    .append = io_append,
	    .truncate = io_truncate,
	    .snapshot_put = io_snapshot_put,
	    .snapshot_get = io_snapshot_get,
	    .time = io_time,
	    .random = io_random,
	    .async_work = io_async_work,
	};
}

/* --- running the events --- */

static void dispatch(struct ev e)
{
	struct node *n = &S.nodes[e.node];
	S.now = e.t;
	struct sim_call c = sim_enter(e.node);
	switch (e.kind) {
	case EV_TICK: {
		unsigned msecs = (unsigned)(uintptr_t)e.p;
		schedule(S.now + (uint64_t)msecs * 1000000u, EV_TICK, e.node, e.p);
		n->tick_cb(&n->io);
		break;
	}
	case EV_DELIVER: {
		struct delivery *d = e.p;
		struct node *from = &S.nodes[d->from];
		d->m.server_id = from->raft.id;
		d->m.server_address = from->address;
		/* raft owns the entries, configuration and data from here on */
		n->recv_cb(&n->io, &d->m);
		raft_free(d);
		break;
	}
	case EV_SEND_CB: {
		struct raft_io_send *req = e.p;
		if (req->cb)
			req->cb(req, 0);
		break;
	}
	case EV_APPEND_CB: {
		struct raft_io_append *req = e.p;
		if (req->cb)
			req->cb(req, 0);
		break;
	}
	case EV_SNAP_PUT_CB: {
		struct raft_io_snapshot_put *req = e.p;
		if (req->cb)
			req->cb(req, 0);
		break;
	}
	case EV_SNAP_GET_CB: {
		struct snap_get *g = e.p;
		g->req->cb(g->req, g->snapshot, g->snapshot ? 0 : RAFT_NOTFOUND);
		free(g);
		break;
	}
	case EV_WORK: {
		struct raft_io_async_work *req = e.p;
		req->cb(req, req->work(req));
		break;
	}
	}
	sim_leave(e.node, c);
}

/* Runs events until cond() holds (checked after each) or until time `until`. */
bool sim_run(bool (*cond)(void), uint64_t until)
{
	while (S.heap_len && S.heap[0].t <= until) {
		dispatch(pop());
		if (cond && cond())
			return true;
	}
	if (S.now < until)
		S.now = until;
	return cond ? cond() : true;
}
