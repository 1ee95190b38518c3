/* raft-fanout: real libraft 0.15 instances with many members, on simulated
 * time, network and disk, to see where the leader's fan-out stops scaling.
 *
 * libraft's own fixture (raft/fixture.h) holds at most 8 servers, so this
 * program supplies its own in-memory struct raft_io, on the same principle:
 * every instance runs in this one thread, and a queue of timed events (ticks,
 * message deliveries, disk writes completing) drives them in simulated time.
 * Nothing sleeps; a run with a given --seed is the same run every time,
 * except for the CPU figures, which are measured.
 *
 * The model (all figures simulated unless said otherwise):
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
 *
 * Each run bootstraps --voters voters and members - voters standbys (as the
 * store keeps them: standbys replicate the log but do not vote), waits for a
 * leader and for every member to have caught up, then measures:
 * 1. idle: --idle-s simulated seconds of heartbeats only;
 * 2. one at a time: --commits commands of --entry-bytes, each proposed when
 *    the previous one was applied on the leader;
 * 3. pipelined: --burst commands with --inflight in flight at once.
 * It prints one JSON line per member count.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <raft.h>

/* Framing around each message on the wire (see the opening comment). */
#define TLS_RECORD_MAX      16384
#define TLS_RECORD_OVERHEAD 22 /* 5-byte header, 1-byte type, 16-byte tag */
#define TCP_MSS             1448
#define TCP_FRAME_OVERHEAD  90 /* Ethernet 38 with preamble and gap, IPv4 20, TCP 32 */
#define UV_PREAMBLE         16

struct params {
	unsigned voters, commits, entry_bytes, burst, inflight;
	bool voters_last;
	unsigned election_ms, heartbeat_ms;
	double idle_s, latency_us, link_mbit, disk_us;
	uint64_t seed;
};

struct counters {
	uint64_t msgs_sent, bytes_sent, wire_sent, msgs_recv, wire_recv;
	uint64_t cpu_ns, calls;
	uint64_t copy_ns; /* of cpu_ns: this program's copies of the messages sent */
};

struct node {
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	unsigned idx;
	char address[24];
	/* what a disk would hold: only what load() must return */
	raft_term term;
	raft_id vote;
	struct raft_buffer boot_conf; /* the bootstrap entry, until load() */
	struct raft_snapshot *snapshot;
	/* raft's callbacks */
	raft_io_tick_cb tick_cb;
	raft_io_recv_cb recv_cb;
	/* the simulated devices: when each is next free, in ns */
	uint64_t tx_free, rx_free, disk_done;
	/* accounting */
	bool timed;
	struct counters c;
	int64_t heap_live, heap_peak;
	unsigned long applied;
};

enum ev_kind { EV_TICK, EV_DELIVER, EV_SEND_CB, EV_APPEND_CB, EV_SNAP_PUT_CB, EV_SNAP_GET_CB, EV_WORK };

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

struct sim {
	struct params p;
	unsigned n;
	struct node *nodes;
	uint64_t now, seq, rng;
	struct ev *heap;
	size_t heap_len, heap_cap;
	int current; /* the instance being run, for the heap accounting; -1: none */
	uint64_t clock_cost_ns;
	/* the workload */
	unsigned leader;
	unsigned proposed, completed, target, inflight, window;
	uint64_t *lat_ns;
	uint64_t *t0_ns;
};

static struct sim S;

/* Voters come first or last in the configuration, the order the leader
 * sends in. */
static bool is_voter(unsigned idx)
{
	return S.p.voters_last ? idx >= S.n - S.p.voters : idx < S.p.voters;
}

static void die(const char *what)
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
	die("raft_aligned_alloc is not expected with an in-memory raft_io");
	return NULL;
}

static void h_aligned_free(void *data, size_t alignment, void *ptr)
{
	(void)data;
	(void)alignment;
	(void)ptr;
	die("raft_aligned_free is not expected with an in-memory raft_io");
}

static struct raft_heap heap_accounting = {
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
static void prefault_heap(size_t bytes)
{
	enum { PIECE = 1 << 20 };
	size_t n = bytes / PIECE + 1;
	void **pieces = calloc(n, sizeof(*pieces));
	if (!pieces)
		die("out of memory");
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, INT32_MAX);
	mallopt(M_TOP_PAD, 64 << 20);
	for (size_t i = 0; i < n; i++) {
		if (!(pieces[i] = malloc(PIECE)))
			die("out of memory growing the heap");
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
struct phase {
	uint64_t wall0, cpu0;
};

static struct phase phase_start(void)
{
	return (struct phase){.wall0 = clock_ns(CLOCK_MONOTONIC), .cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID)};
}

static double phase_descheduled(struct phase p)
{
	uint64_t wall = clock_ns(CLOCK_MONOTONIC) - p.wall0;
	uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - p.cpu0;
	return wall && cpu < wall ? 1.0 - (double)cpu / (double)wall : 0.0;
}

static void calibrate_clock(void)
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

struct call {
	int prev;
	uint64_t t0;
};

static struct call enter(unsigned idx)
{
	struct call c = {.prev = S.current, .t0 = 0};
	S.current = (int)idx;
	if (S.nodes[idx].timed)
		c.t0 = cpu_now();
	return c;
}

static void leave(unsigned idx, struct call c)
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
			die("out of memory");
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
	size_t tls = payload + TLS_RECORD_OVERHEAD * ((payload + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX);
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
			die("raft_configuration_add failed copying a configuration");
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
		die("out of memory copying entries");
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
		die("out of memory copying a snapshot");
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
		snprintf(io->errmsg, sizeof(io->errmsg), "no server %llu", (unsigned long long)m->server_id);
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
			die("out of memory copying a snapshot message");
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

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req, raft_io_async_work_cb cb)
{
	req->cb = cb;
	schedule(S.now, EV_WORK, io_node(io)->idx, req);
	return 0;
}

/* --- the state machine and the workload --- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct node *n = fsm->data;
	(void)buf;
	n->applied++;
	*result = NULL;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	*bufs = raft_malloc(sizeof(**bufs));
	if (!*bufs || !((*bufs)->base = raft_malloc(sizeof(n->applied))))
		return RAFT_NOMEM;
	(*bufs)->len = sizeof(n->applied);
	memcpy((*bufs)->base, &n->applied, sizeof(n->applied));
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct node *n = fsm->data;
	memcpy(&n->applied, buf->base, sizeof(n->applied));
	raft_free(buf->base);
	return 0;
}

struct proposal {
	struct raft_apply req;
	unsigned i;
};

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct proposal *pr = req->data;
	(void)result;
	if (status != 0) {
		fprintf(stderr, "raft-fanout: a command failed: %s\n", raft_strerror(status));
		exit(1);
	}
	S.lat_ns[pr->i] = S.now - S.t0_ns[pr->i];
	S.completed++;
	S.inflight--;
	free(pr);
}

static void propose_one(void)
{
	struct node *l = &S.nodes[S.leader];
	struct proposal *pr = calloc(1, sizeof(*pr));
	if (!pr)
		die("out of memory");
	pr->i = S.proposed;
	pr->req.data = pr;
	struct call c = enter(S.leader);
	struct raft_buffer buf = {.base = raft_malloc(S.p.entry_bytes), .len = S.p.entry_bytes};
	if (!buf.base)
		die("out of memory");
	memset(buf.base, 'x', buf.len);
	S.t0_ns[pr->i] = S.now;
	int r = raft_apply(&l->raft, &pr->req, &buf, 1, apply_cb);
	leave(S.leader, c);
	if (r != 0) {
		fprintf(stderr, "raft-fanout: raft_apply: %s\n", raft_errmsg(&l->raft));
		exit(1);
	}
	S.proposed++;
	S.inflight++;
}

/* --- running the events --- */

static void dispatch(struct ev e)
{
	struct node *n = &S.nodes[e.node];
	S.now = e.t;
	struct call c = enter(e.node);
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
	leave(e.node, c);
}

/* Runs events until cond() holds (checked after each) or until time `until`. */
static bool run(bool (*cond)(void), uint64_t until)
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

static bool have_leader(void)
{
	for (unsigned i = 0; i < S.n; i++)
		if (is_voter(i) && raft_state(&S.nodes[i].raft) == RAFT_LEADER) {
			S.leader = i;
			return true;
		}
	return false;
}

/* Every member holds and has applied the leader's last entry. */
static bool all_caught_up(void)
{
	struct node *l = &S.nodes[S.leader];
	raft_index last = raft_last_index(&l->raft);
	if (raft_state(&l->raft) != RAFT_LEADER || l->raft.commit_index < last)
		return false;
	for (unsigned i = 0; i < S.n; i++)
		if (raft_last_applied(&S.nodes[i].raft) < last)
			return false;
	return true;
}

/* The workload's driver: propose when a slot frees, stop when all are done. */
static bool workload_step(void)
{
	if (raft_state(&S.nodes[S.leader].raft) != RAFT_LEADER)
		die("the leader stepped down during the measurement");
	while (S.proposed < S.target && S.inflight < S.window)
		propose_one();
	return S.completed == S.target;
}

static const uint64_t FOREVER = UINT64_MAX;

/* --- one run with n members --- */

struct result {
	struct counters idle, seq, pipe;
	double idle_s, seq_sim_s, pipe_sim_s;
	uint64_t median_ns, p99_ns, max_ns;
	int64_t heap_idle, heap_peak;
	double wall_s, desched_idle, desched_seq, desched_pipe;
	raft_id leader;
	uint64_t elect_ms;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void setup(unsigned n)
{
	memset(&S.nodes[0], 0, sizeof(*S.nodes) * n);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	for (unsigned i = 0; i < n; i++) {
		struct node *nd = &S.nodes[i];
		nd->idx = i;
		snprintf(nd->address, sizeof(nd->address), "10.0.%u.%u:7700", i / 250, i % 250 + 1);
		if (raft_configuration_add(&conf, i + 1, nd->address,
		                           is_voter(i) ? RAFT_VOTER : RAFT_STANDBY) != 0)
			die("raft_configuration_add failed");
	}
	for (unsigned i = 0; i < n; i++) {
		struct node *nd = &S.nodes[i];
		nd->timed = is_voter(i);
		nd->io = (struct raft_io){
		    .version = 2,
		    .impl = nd,
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
		nd->fsm = (struct raft_fsm){
		    .version = 1, .data = nd, .apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore};
		struct call c = enter(i);
		int r = raft_init(&nd->raft, &nd->io, &nd->fsm, i + 1, nd->address);
		if (r == 0) {
			/* the store's settings (src/store/store.c) */
			raft_set_pre_vote(&nd->raft, true);
			raft_set_election_timeout(&nd->raft, S.p.election_ms);
			raft_set_heartbeat_timeout(&nd->raft, S.p.heartbeat_ms);
			raft_set_snapshot_threshold(&nd->raft, 8192);
			raft_set_install_snapshot_timeout(&nd->raft, 5 * S.p.election_ms);
			r = raft_bootstrap(&nd->raft, &conf);
		}
		if (r == 0)
			r = raft_start(&nd->raft);
		leave(i, c);
		if (r != 0) {
			fprintf(stderr, "raft-fanout: member %u: %s\n", i + 1, raft_errmsg(&nd->raft));
			exit(1);
		}
	}
	raft_configuration_close(&conf);
}

/* The time in calls counts only the share of the phase the thread ran: the
 * rest, other processes ran (spread evenly over the calls, as far as one
 * can tell). */
static struct counters leader_counters(double descheduled)
{
	struct counters c = S.nodes[S.leader].c;
	c.cpu_ns = (uint64_t)((double)c.cpu_ns * (1.0 - descheduled));
	c.copy_ns = (uint64_t)((double)c.copy_ns * (1.0 - descheduled));
	return c;
}

static void reset_counters(void)
{
	for (unsigned i = 0; i < S.n; i++)
		memset(&S.nodes[i].c, 0, sizeof(S.nodes[i].c));
}

static void commits(unsigned count, unsigned inflight)
{
	S.proposed = S.completed = S.inflight = 0;
	S.target = count;
	S.window = inflight;
	workload_step();
	if (!run(workload_step, FOREVER))
		die("the commands did not complete");
}

static void one_run(unsigned n, struct result *res)
{
	double w0 = wall_now();
	S.n = n;
	S.now = 0;
	S.heap_len = 0;
	S.rng = S.p.seed * 0x9e3779b97f4a7c15u + n;
	setup(n);

	uint64_t limit = 60ull * 1000000000u;
	if (!run(have_leader, limit))
		die("no leader within 60 simulated seconds");
	res->elect_ms = S.now / 1000000u;
	res->leader = S.leader + 1;
	/* A command of this term commits every earlier entry, then all catch up. */
	commits(1, 1);
	if (!run(all_caught_up, S.now + limit))
		die("the members did not catch up within 60 simulated seconds");
	run(NULL, S.now + 2ull * S.p.heartbeat_ms * 1000000u);

	struct node *l = &S.nodes[S.leader];
	reset_counters();
	uint64_t t0 = S.now;
	struct phase ph = phase_start();
	run(NULL, S.now + (uint64_t)(S.p.idle_s * 1e9));
	res->desched_idle = phase_descheduled(ph);
	res->idle = leader_counters(res->desched_idle);
	res->idle_s = (double)(S.now - t0) / 1e9;
	res->heap_idle = l->heap_live;
	l->heap_peak = l->heap_live;

	reset_counters();
	t0 = S.now;
	ph = phase_start();
	commits(S.p.commits, 1);
	res->desched_seq = phase_descheduled(ph);
	res->seq = leader_counters(res->desched_seq);
	res->seq_sim_s = (double)(S.now - t0) / 1e9;
	qsort(S.lat_ns, S.p.commits, sizeof(*S.lat_ns), cmp_u64);
	res->median_ns = S.lat_ns[S.p.commits / 2];
	res->p99_ns = S.lat_ns[(S.p.commits * 99) / 100];
	res->max_ns = S.lat_ns[S.p.commits - 1];

	memset(&res->pipe, 0, sizeof(res->pipe));
	res->pipe_sim_s = res->desched_pipe = 0;
	if (S.p.burst) {
		reset_counters();
		t0 = S.now;
		ph = phase_start();
		commits(S.p.burst, S.p.inflight);
		res->desched_pipe = phase_descheduled(ph);
		res->pipe = leader_counters(res->desched_pipe);
		res->pipe_sim_s = (double)(S.now - t0) / 1e9;
	}
	res->heap_peak = l->heap_peak;
	res->wall_s = wall_now() - w0;
}

/* The leader's counters of one phase, per `per` (seconds or commits). */
static void print_counters(const char *name, const struct counters *c, double per, const char *unit)
{
	printf(" \"%s\": {\"msgs_per_%s\": %.1f, \"bytes_per_%s\": %.0f, \"wire_bytes_per_%s\": %.0f, "
	       "\"recv_msgs_per_%s\": %.1f, \"cpu_us_per_%s\": %.1f, \"copy_us_per_%s\": %.1f, ",
	       name, unit, c->msgs_sent / per, unit, c->bytes_sent / per, unit, c->wire_sent / per, unit,
	       c->msgs_recv / per, unit, c->cpu_ns / 1e3 / per, unit, c->copy_ns / 1e3 / per);
}

static void print_result(unsigned n, const struct result *r)
{
	const struct params *p = &S.p;
	printf("{\"members\": %u, \"voters\": %u, \"voters_at\": \"%s\", \"seed\": %" PRIu64
	       ", \"leader\": %llu, \"elected_sim_ms\": %" PRIu64 ",\n",
	       n, p->voters, p->voters_last ? "last" : "first", p->seed, (unsigned long long)r->leader,
	       r->elect_ms);
	print_counters("idle", &r->idle, r->idle_s, "s");
	printf("\"sim_s\": %.1f, \"descheduled\": %.3f},\n", r->idle_s, r->desched_idle);
	print_counters("one_at_a_time", &r->seq, p->commits, "commit");
	printf("\"commits\": %u, \"entry_bytes\": %u, \"median_sim_ms\": %.3f, \"p99_sim_ms\": %.3f, "
	       "\"max_sim_ms\": %.3f, \"descheduled\": %.3f},\n",
	       p->commits, p->entry_bytes, r->median_ns / 1e6, r->p99_ns / 1e6, r->max_ns / 1e6,
	       r->desched_seq);
	if (p->burst) {
		print_counters("pipelined", &r->pipe, p->burst, "commit");
		printf("\"commits\": %u, \"inflight\": %u, \"commits_per_sim_s\": %.0f, "
		       "\"leader_uplink_busy\": %.3f, \"descheduled\": %.3f},\n",
		       p->burst, p->inflight, p->burst / r->pipe_sim_s,
		       r->pipe.wire_sent * 8.0 / (p->link_mbit * 1e6) / r->pipe_sim_s, r->desched_pipe);
	}
	printf(" \"leader_heap_bytes\": {\"idle\": %" PRId64 ", \"peak\": %" PRId64 "},\n"
	       " \"clock_cost_ns\": %" PRIu64 ", \"wall_s\": %.2f}\n",
	       r->heap_idle, r->heap_peak, S.clock_cost_ns, r->wall_s);
	fflush(stdout);
}

/* --- the command line --- */

static const char usage[] =
    "usage: raft-fanout [--members 5,16,64,256,1000] [--voters 5] [--commits 200]\n"
    "                   [--entry-bytes 200] [--burst 2000] [--inflight 64] [--idle-s 5]\n"
    "                   [--latency-us 200] [--link-mbit 1000] [--disk-us 1000]\n"
    "                   [--election-ms 300] [--heartbeat-ms 50] [--voters-at first|last]\n"
    "                   [--seed 1]\n"
    "\n"
    "Runs real libraft 0.15 instances (voters, the rest standbys) in one process\n"
    "on simulated time, network and disk, and prints one JSON line per member\n"
    "count: the leader's messages, bytes and measured CPU when idle, per commit\n"
    "one at a time (with the simulated commit latency) and pipelined, and its\n"
    "heap. Time, latency and bytes are simulated; CPU is measured (libraft's\n"
    "work only: no system calls or TLS). The same --seed gives the same run.\n";

static int parse_uint(const char *opt, const char *s, unsigned min, unsigned long max, unsigned *ret)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "raft-fanout: %s: \"%s\" is not a whole number from %u to %lu\n", opt, s,
		        min, max);
		return -EINVAL;
	}
	*ret = (unsigned)v;
	return 0;
}

static int parse_double(const char *opt, const char *s, double min, double *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min)) {
		fprintf(stderr, "raft-fanout: %s: \"%s\" is not a number of at least %g\n", opt, s, min);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

#define MAX_MEMBERS 100000
#define MAX_COUNTS  32

static int parse_members(const char *s, unsigned *counts, unsigned *ret_n)
{
	char *copy = strdup(s), *save = NULL;
	unsigned n = 0;
	int r = 0;
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
		if (n == MAX_COUNTS) {
			fprintf(stderr, "raft-fanout: --members: more than %d counts\n", MAX_COUNTS);
			r = -EINVAL;
			break;
		}
		r = parse_uint("--members", tok, 1, MAX_MEMBERS, &counts[n++]);
	}
	free(copy);
	if (r == 0 && n == 0) {
		fprintf(stderr, "raft-fanout: --members: an empty list\n");
		r = -EINVAL;
	}
	if (r == 0)
		*ret_n = n;
	return r;
}

int main(int argc, char **argv)
{
	unsigned counts[MAX_COUNTS] = {5, 16, 64, 256, 1000}, n_counts = 5;
	S.p = (struct params){.voters = 5,
	                      .commits = 200,
	                      .entry_bytes = 200,
	                      .burst = 2000,
	                      .inflight = 64,
	                      .election_ms = 300,
	                      .heartbeat_ms = 50,
	                      .idle_s = 5,
	                      .latency_us = 200,
	                      .link_mbit = 1000,
	                      .disk_us = 1000,
	                      .seed = 1};
	static const struct option opts[] = {
	    {"members", required_argument, NULL, 'm'},   {"voters", required_argument, NULL, 'v'},
	    {"commits", required_argument, NULL, 'c'},   {"entry-bytes", required_argument, NULL, 'e'},
	    {"burst", required_argument, NULL, 'b'},     {"inflight", required_argument, NULL, 'f'},
	    {"idle-s", required_argument, NULL, 'i'},    {"latency-us", required_argument, NULL, 'l'},
	    {"link-mbit", required_argument, NULL, 'k'}, {"disk-us", required_argument, NULL, 'd'},
	    {"election-ms", required_argument, NULL, 'E'}, {"heartbeat-ms", required_argument, NULL, 'H'},
	    {"seed", required_argument, NULL, 's'},      {"help", no_argument, NULL, 'h'},
	    {"voters-at", required_argument, NULL, 'a'},
	    {0},
	};
	int c, r = 0;
	unsigned seed = 1;
	while (r == 0 && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': r = parse_members(optarg, counts, &n_counts); break;
		case 'v': r = parse_uint("--voters", optarg, 1, 9, &S.p.voters); break;
		case 'c': r = parse_uint("--commits", optarg, 1, 10000000, &S.p.commits); break;
		case 'e': r = parse_uint("--entry-bytes", optarg, 8, 1u << 20, &S.p.entry_bytes); break;
		case 'b': r = parse_uint("--burst", optarg, 0, 10000000, &S.p.burst); break;
		case 'f': r = parse_uint("--inflight", optarg, 1, 100000, &S.p.inflight); break;
		case 'i': r = parse_double("--idle-s", optarg, 0.1, &S.p.idle_s); break;
		case 'l': r = parse_double("--latency-us", optarg, 0, &S.p.latency_us); break;
		case 'k': r = parse_double("--link-mbit", optarg, 1, &S.p.link_mbit); break;
		case 'd': r = parse_double("--disk-us", optarg, 0, &S.p.disk_us); break;
		case 'E': r = parse_uint("--election-ms", optarg, 10, 600000, &S.p.election_ms); break;
		case 'H': r = parse_uint("--heartbeat-ms", optarg, 1, 600000, &S.p.heartbeat_ms); break;
		case 's': r = parse_uint("--seed", optarg, 0, UINT32_MAX, &seed); break;
		case 'a':
			if (strcmp(optarg, "first") && strcmp(optarg, "last")) {
				fprintf(stderr, "raft-fanout: --voters-at: \"%s\" is neither first nor last\n", optarg);
				r = -EINVAL;
			}
			S.p.voters_last = strcmp(optarg, "last") == 0;
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (r != 0)
		return 2;
	if (optind < argc) {
		fprintf(stderr, "raft-fanout: unexpected argument \"%s\"\n%s", argv[optind], usage);
		return 2;
	}
	if (S.p.heartbeat_ms >= S.p.election_ms) {
		fprintf(stderr, "raft-fanout: --heartbeat-ms (%u) must be below --election-ms (%u)\n",
		        S.p.heartbeat_ms, S.p.election_ms);
		return 2;
	}
	S.p.seed = seed;
	unsigned max = 0;
	for (unsigned i = 0; i < n_counts; i++) {
		if (counts[i] < S.p.voters) {
			fprintf(stderr, "raft-fanout: --members: %u members is fewer than the %u voters\n",
			        counts[i], S.p.voters);
			return 2;
		}
		if (counts[i] > max)
			max = counts[i];
	}
	S.current = -1;
	S.nodes = calloc(max, sizeof(*S.nodes));
	unsigned longest = S.p.commits > S.p.burst ? S.p.commits : S.p.burst;
	S.lat_ns = calloc(longest, sizeof(*S.lat_ns));
	S.t0_ns = calloc(longest, sizeof(*S.t0_ns));
	if (!S.nodes || !S.lat_ns || !S.t0_ns)
		die("out of memory");
	/* A log entry in memory: its payload, libraft's entry and reference
	 * count (about 100 bytes), the tag of each allocation. */
	double per_entry = S.p.entry_bytes + 160.0;
	prefault_heap((size_t)(1.2 * max * (S.p.commits + S.p.burst + 64.0) * per_entry) + ((size_t)64 << 20));
	raft_heap_set(&heap_accounting);
	calibrate_clock();
	for (unsigned i = 0; i < n_counts; i++) {
		struct result res;
		one_run(counts[i], &res);
		print_result(counts[i], &res);
		/* The instances of this run are abandoned, not closed: closing 1000
		 * of them costs time and measures nothing. Their memory goes with
		 * the process. */
		S.heap_len = 0;
	}
	return 0;
}
