/* The controller (src/switch) against a fake switch, without root: the
 * fake listens on 127.0.0.1, speaks OpenFlow 1.3 with src/openflow's codec,
 * keeps a flow table and records what the controller sends; the real
 * controller (sw_open) connects to it, backed by a real store (store_open,
 * bootstrapped in a temporary directory on 127.0.0.1). One test per
 * feature; every wait polls the event loop with a deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "api/server.h"
#include "store/store.h"
#include "switch/conn.h"
#include "switch/switch.h"
#include "tables-all.h"
#include "ports.h"

#define WAIT_MS    8000
#define FAKE_DPID  0x00000000000000a1ull
#define FAKE_FLOWS 64
#define FAKE_PORTS 1100
#define FOREIGN    0x1111000000000000ull /* a cookie that is not ETTM's */
/* OFPET_ROLE_REQUEST_FAILED/OFPRRFC_STALE, OFPET_BAD_REQUEST/OFPBRC_IS_SLAVE. */
#define FAKE_ERR_STALE    ((enum of13_err)0x000b0000)
#define FAKE_ERR_IS_SLAVE ((enum of13_err)0x0001000a)

/* ---- the fake switch ---- */

struct fake {
	uv_loop_t *loop;
	uv_tcp_t listener, conn;
	bool connected;
	char address[32];
	uint8_t *in;
	size_t in_len, in_cap;
	/* What the controller sent. */
	bool hello, features_request;
	unsigned set_configs, miss_send_len, port_desc_requests, flow_reads;
	unsigned role_requests, flow_mods, flow_deletes, barriers, echo_requests;
	unsigned multipart[16]; /* requests by multipart type */
	struct of13_role_msg role;
	/* Roles as Open vSwitch keeps them (ofproto.c, connmgr.c): the
	 * highest generation id seen, compared as a signed difference, and
	 * this connection's role (EQUAL until it asks). */
	uint64_t max_generation;
	bool max_known;
	uint32_t conn_role;
	unsigned stale_refusals, queries, slave_refusals, writes_as_slave;
	/* Another controller that takes the switch back (generation id 2^63)
	 * whenever this one is master and sends anything but a role request. */
	bool attacker;
	unsigned attacks;
	bool echo_replied;
	uint32_t echo_xid;
	char echo_data[16];
	/* The switch's state. */
	struct of13_flow_mod table[FAKE_FLOWS];
	size_t n_table;
	struct of13_port ports[FAKE_PORTS];
	unsigned n_ports;
	unsigned ports_per_part; /* 0: every port in one part */
};

static void write_done(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

static void fake_send(struct fake *f, struct obuf *b)
{
	uint8_t *data;
	size_t len;
	assert_int_equal(of13_finish(b), 0);
	assert_int_equal(obuf_finish(b, &data, &len), 0);
	uv_write_t *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->data = data;
	uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
	assert_int_equal(uv_write(w, (uv_stream_t *)&f->conn, &buf, 1, write_done), 0);
}

/* Spec 6.4: ADD replaces a flow of the same table, priority and match;
 * DELETE_STRICT removes it (when the cookie matches under the mask). */
static void fake_flow_mod(struct fake *f, const struct of13_flow_mod *fm)
{
	f->flow_mods++;
	size_t i = 0;
	while (i < f->n_table && !sw_flow_same_key(&f->table[i], fm))
		i++;
	if (fm->command == OF13_FLOW_DELETE_STRICT) {
		f->flow_deletes++;
		if (i < f->n_table &&
		    (f->table[i].cookie & fm->cookie_mask) == (fm->cookie & fm->cookie_mask))
			f->table[i] = f->table[--f->n_table];
		return;
	}
	if (fm->command != OF13_FLOW_ADD)
		return;
	if (i == f->n_table) {
		assert_true(f->n_table < FAKE_FLOWS);
		f->n_table++;
	}
	f->table[i] = *fm;
}

static void fake_flow_stats(struct fake *f, uint32_t xid)
{
	static struct of13_flow_stats fs[FAKE_FLOWS];
	f->flow_reads++;
	for (size_t i = 0; i < f->n_table; i++) {
		const struct of13_flow_mod *fm = &f->table[i];
		fs[i] = (struct of13_flow_stats){.table_id = fm->table_id,
		                                 .priority = fm->priority,
		                                 .cookie = fm->cookie,
		                                 .match = fm->match,
		                                 .n_instructions = fm->n_instructions};
		memcpy(fs[i].instructions, fm->instructions, sizeof(fm->instructions));
	}
	struct obuf b = {0};
	of13_flow_stats_reply_encode(&b, xid, 0, fs, (unsigned)f->n_table);
	fake_send(f, &b);
}

static void fake_multipart(struct fake *f, const struct of13_header *h, const uint8_t *msg)
{
	uint16_t type, flags;
	assert_int_equal(of13_multipart_decode(msg, h->length, &type, &flags), OF13_OK);
	if (type < 16)
		f->multipart[type]++;
	struct obuf b = {0};
	if (type == OF13_MP_PORT_DESC) {
		f->port_desc_requests++;
		unsigned per = f->ports_per_part ? f->ports_per_part : f->n_ports;
		for (unsigned at = 0; at < f->n_ports; at += per) {
			unsigned n = f->n_ports - at < per ? f->n_ports - at : per;
			of13_port_desc_reply_encode(
			    &b, h->xid, at + n < f->n_ports ? OF13_MP_MORE : 0, &f->ports[at], n);
			fake_send(f, &b);
		}
		return;
	} else if (type == OF13_MP_PORT_STATS) {
		/* Counters: each port has received as many packets as its number. */
		unsigned per = f->ports_per_part ? f->ports_per_part : f->n_ports;
		for (unsigned at = 0; at < f->n_ports; at += per) {
			unsigned n = f->n_ports - at < per ? f->n_ports - at : per;
			static struct of13_port_stats st[FAKE_PORTS];
			for (unsigned k = 0; k < n; k++)
				st[k] = (struct of13_port_stats){
				    .port_no = f->ports[at + k].port_no,
				    .rx_packets = f->ports[at + k].port_no};
			of13_port_stats_reply_encode(&b, h->xid,
			                             at + n < f->n_ports ? OF13_MP_MORE : 0, st, n);
			fake_send(f, &b);
		}
		return;
	} else if (type == OF13_MP_GROUP) {
		of13_group_stats_reply_encode(&b, h->xid, 0, NULL, 0);
	} else if (type == OF13_MP_FLOW) {
		fake_flow_stats(f, h->xid);
		return;
	} else {
		fail_msg("multipart type %u", type);
	}
	fake_send(f, &b);
}

/* What Open vSwitch does when another connection claims MASTER with
 * @generation: the others' masters become slaves. */
static void fake_attack(struct fake *f, uint64_t generation)
{
	f->attacks++;
	f->max_generation = generation;
	f->max_known = true;
	if (f->conn_role == OF13_ROLE_MASTER)
		f->conn_role = OF13_ROLE_SLAVE;
}

static void fake_message(struct fake *f, const struct of13_header *h, const uint8_t *msg)
{
	struct obuf b = {0};
	if (f->attacker && f->conn_role == OF13_ROLE_MASTER && h->type != OF13_ROLE_REQUEST)
		fake_attack(f, 1ull << 63);
	switch (h->type) {
	case OF13_HELLO:
		f->hello = true;
		return;
	case OF13_FEATURES_REQUEST:
		f->features_request = true;
		of13_features_encode(&b, h->xid,
		                     &(struct of13_features){.datapath_id = FAKE_DPID,
		                                             .n_buffers = 0,
		                                             .n_tables = 254});
		break;
	case OF13_SET_CONFIG: {
		struct of13_switch_config sc;
		assert_int_equal(of13_set_config_decode(msg, h->length, &sc), OF13_OK);
		f->set_configs++;
		f->miss_send_len = sc.miss_send_len;
		return;
	}
	case OF13_ROLE_REQUEST: {
		struct of13_role_msg r;
		assert_int_equal(of13_role_decode(msg, h->length, &r), OF13_OK);
		if (r.role == OF13_ROLE_NOCHANGE) {
			f->queries++;
		} else {
			f->role_requests++;
			f->role = r;
			if (r.role != OF13_ROLE_EQUAL && f->max_known &&
			    (int64_t)(r.generation_id - f->max_generation) < 0) {
				f->stale_refusals++;
				of13_error_encode(&b, h->xid, FAKE_ERR_STALE, msg, h->length);
				break;
			}
			if (r.role != OF13_ROLE_EQUAL) {
				f->max_generation = r.generation_id;
				f->max_known = true;
			}
			f->conn_role = r.role;
		}
		of13_role_encode(&b, OF13_ROLE_REPLY, h->xid,
		                 &(struct of13_role_msg){f->conn_role, f->max_generation});
		break;
	}
	case OF13_MULTIPART_REQUEST:
		fake_multipart(f, h, msg);
		return;
	case OF13_FLOW_MOD: {
		if (f->conn_role == OF13_ROLE_SLAVE) {
			/* Spec 6.3.6: a slave's flow-mod is refused. */
			f->writes_as_slave++;
			of13_error_encode(&b, h->xid, FAKE_ERR_IS_SLAVE, msg, h->length);
			break;
		}
		struct of13_flow_mod fm;
		assert_int_equal(of13_flow_mod_decode(msg, h->length, &fm), OF13_OK);
		fake_flow_mod(f, &fm);
		return;
	}
	case OF13_BARRIER_REQUEST:
		f->barriers++;
		of13_simple_encode(&b, OF13_BARRIER_REPLY, h->xid, NULL, 0);
		break;
	case OF13_ECHO_REQUEST:
		f->echo_requests++;
		of13_simple_encode(&b, OF13_ECHO_REPLY, h->xid, msg + 8, h->length - 8u);
		break;
	case OF13_ECHO_REPLY:
		f->echo_replied = true;
		f->echo_xid = h->xid;
		snprintf(f->echo_data, sizeof(f->echo_data), "%.*s", (int)(h->length - 8u),
		         (const char *)msg + 8);
		return;
	default:
		return; /* group_mod, packet_out */
	}
	fake_send(f, &b);
}

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	static char chunk[65536];
	(void)hint;
	*buf = uv_buf_init(chunk, sizeof(chunk));
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct fake *f = st->data;
	if (n < 0) {
		uv_read_stop(st);
		return;
	}
	if (f->in_len + (size_t)n > f->in_cap) {
		f->in_cap = (f->in_len + (size_t)n) * 2;
		f->in = realloc(f->in, f->in_cap);
		assert_non_null(f->in);
	}
	memcpy(f->in + f->in_len, buf->base, (size_t)n);
	f->in_len += (size_t)n;
	size_t at = 0;
	while (f->in_len - at >= 8) {
		size_t len = (size_t)f->in[at + 2] << 8 | f->in[at + 3];
		if (len < 8 || f->in_len - at < len)
			break;
		struct of13_header h;
		enum of13_err e = of13_header_decode(f->in + at, len, &h);
		assert_true(e == OF13_OK || (e == OF13_ERR_BAD_VERSION && h.type == OF13_HELLO));
		fake_message(f, &h, f->in + at);
		at += len;
	}
	memmove(f->in, f->in + at, f->in_len - at);
	f->in_len -= at;
}

static void fake_accept(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	assert_int_equal(status, 0);
	assert_false(f->connected);
	uv_tcp_init(f->loop, &f->conn);
	f->conn.data = f;
	assert_int_equal(uv_accept(server, (uv_stream_t *)&f->conn), 0);
	f->connected = true;
	f->conn_role = OF13_ROLE_EQUAL;
	struct obuf b = {0};
	of13_hello_encode(&b, 1, &(struct of13_hello){.version_bitmap = 1u << 4});
	fake_send(f, &b);
	uv_read_start((uv_stream_t *)&f->conn, fake_alloc, fake_read);
}

/* Ports p1 to p@n. */
static void fake_ports(struct fake *f, unsigned n)
{
	assert_true(n <= FAKE_PORTS);
	f->n_ports = 0;
	for (unsigned i = 0; i < n; i++) {
		struct of13_port *p = &f->ports[f->n_ports++];
		*p = (struct of13_port){.port_no = i + 1, .curr_speed = 1000000};
		snprintf(p->name, sizeof(p->name), "p%u", i + 1);
		p->hw_addr[0] = 2;
		p->hw_addr[5] = (uint8_t)(i + 1);
	}
}

static void fake_open(struct fake *f, uv_loop_t *loop)
{
	f->loop = loop;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uv_tcp_init(loop, &f->listener);
	f->listener.data = f;
	assert_int_equal(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 4, fake_accept), 0);
	int len = sizeof(sa);
	uv_tcp_getsockname(&f->listener, (struct sockaddr *)&sa, &len);
	snprintf(f->address, sizeof(f->address), "127.0.0.1:%u", ntohs(sa.sin_port));
	fake_ports(f, 3);
}

static void fake_close(struct fake *f)
{
	uv_close((uv_handle_t *)&f->listener, NULL);
	if (f->connected)
		uv_close((uv_handle_t *)&f->conn, NULL);
	free(f->in);
}

/* A flow as the switch holds it, by table and priority. */
static const struct of13_flow_mod *fake_find(const struct fake *f, uint8_t table, uint16_t priority)
{
	for (size_t i = 0; i < f->n_table; i++)
		if (f->table[i].table_id == table && f->table[i].priority == priority)
			return &f->table[i];
	return NULL;
}

/* ---- a service with flows of its own ---- */

struct test_service {
	uint8_t table;
	unsigned calls, installed_calls;
};

static struct of13_flow_mod service_flow(uint8_t table, uint16_t priority, uint32_t out_port)
{
	struct of13_flow_mod fm = sw_flow_base(table, priority);
	of13_match_add(&fm.match, OF13_OXM_ETH_TYPE, 0x0800, NULL);
	sw_output(sw_apply(&fm), out_port);
	sw_flow_canonical(&fm);
	return fm;
}

/* Two flows in the service's table: priority 10 and 20. */
static int service_flows(void *userdata, const struct store_state *st,
                         const struct sw_port_ref *uplinks, size_t n_uplinks, uint64_t dpid,
                         struct sw_flows *out, struct sw_groups *groups)
{
	struct test_service *t = userdata;
	(void)st, (void)uplinks, (void)n_uplinks, (void)groups;
	t->calls++;
	assert_true(dpid == FAKE_DPID);
	struct of13_flow_mod a = service_flow(t->table, 10, 1);
	struct of13_flow_mod b = service_flow(t->table, 20, 2);
	return sw_flows_add(out, &a) < 0 ? -ENOMEM : sw_flows_add(out, &b);
}

static void service_installed(void *userdata, uint64_t dpid, const struct sw_flows *installed)
{
	struct test_service *t = userdata;
	(void)dpid, (void)installed;
	t->installed_calls++;
}

static const struct sw_service test_service_ops = {
    .flows = service_flows,
    .installed = service_installed,
};

/* ---- the fixture: a loop, a store, the fake switch, the controller ---- */

#define N_SERVICES 6

struct fixture {
	uv_loop_t loop;
	char dir[64];
	struct store *store;
	struct fake fake;
	struct swc *sw;
	struct test_service svc[N_SERVICES];
	bool store_closed;
	char peer_address[STORE_ADDR_MAX];
	/* test_role_slave: the peer APIs, and a second member that follows. */
	struct ctl_server peer[2];
	bool peer_open[2];
	struct store *follower;
	bool follower_closed, follower_closing;
};

/* Runs the loop until @cond holds or WAIT_MS pass; returns @cond. */
static bool run_until(struct fixture *f, bool (*cond)(struct fixture *f))
{
	uv_update_time(&f->loop);
	uint64_t deadline = uv_now(&f->loop) + WAIT_MS;
	while (!cond(f) && uv_now(&f->loop) < deadline) {
		uv_run(&f->loop, UV_RUN_ONCE);
		uv_update_time(&f->loop);
	}
	return cond(f);
}

/* Runs the loop for @ms, whatever happens. */
static void run_for(struct fixture *f, uint64_t ms)
{
	uv_update_time(&f->loop);
	uint64_t deadline = uv_now(&f->loop) + ms;
	while (uv_now(&f->loop) < deadline) {
		uv_run(&f->loop, UV_RUN_ONCE);
		uv_update_time(&f->loop);
	}
}

static bool store_leads(struct fixture *f)
{
	return store_is_leader(f->store) && store_term(f->store) > 0;
}

static void store_options_for(struct fixture *f, uint64_t id, struct store_options *o)
{
	store_options_default(o);
	o->id = id;
	snprintf(o->name, sizeof(o->name), "h%u", (unsigned)id);
	uint16_t port[2];
	assert_int_equal(loopback_ports(port, 2), 0);
	snprintf(o->raft_address, sizeof(o->raft_address), "127.0.0.1:%u", port[0]);
	snprintf(o->peer_address, sizeof(o->peer_address), "127.0.0.1:%u", port[1]);
	snprintf(o->dir, sizeof(o->dir), "%s/store%u", f->dir, (unsigned)id);
	o->election_ms = 100;
}

static void open_store(struct fixture *f)
{
	struct store_options o;
	store_options_for(f, 1, &o);
	o.bootstrap = true;
	snprintf(f->peer_address, sizeof(f->peer_address), "%s", o.peer_address);
	char *error = NULL;
	assert_int_equal(store_open(&f->loop, &o, &f->store, &error), 0);
	assert_true(run_until(f, store_leads));
}

static void open_switches_on(struct fixture *f, struct store *store)
{
	struct sw_options o;
	sw_options_default(&o);
	o.n_switches = 1;
	snprintf(o.switches[0], sizeof(o.switches[0]), "%s", f->fake.address);
	o.n_uplinks = 1;
	o.uplinks[0] = (struct sw_uplink){.dpid = FAKE_DPID, .port = "p3"};
	o.stats_interval_ms = 100;
	o.fiat_after_ms = 0;
	struct sw_self self = {.control_addr = 0x0a4d0001, .guest_addr = 0x0a4d0101};
	snprintf(self.name, sizeof(self.name), "h1");
	char *error = NULL;
	assert_int_equal(sw_open(&f->loop, &o, &self, store, &f->sw, &error), 0);
	assert_null(error);
}

static void open_switches(struct fixture *f)
{
	open_switches_on(f, f->store);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-switch-conn-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	open_store(f);
	fake_open(&f->fake, &f->loop);
	*state = f;
	return 0;
}

static void store_closed(void *userdata)
{
	struct fixture *f = userdata;
	f->store_closed = true;
}

static void follower_closed(void *userdata)
{
	struct fixture *f = userdata;
	f->follower_closed = true;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->sw)
		sw_close(f->sw, NULL, NULL);
	fake_close(&f->fake);
	for (unsigned i = 0; i < 2; i++)
		if (f->peer_open[i])
			ctl_server_close(&f->peer[i], NULL);
	if (f->follower)
		store_close(f->follower, follower_closed, f);
	else if (!f->follower_closing)
		f->follower_closed = true;
	store_close(f->store, store_closed, f);
	uv_update_time(&f->loop);
	uint64_t deadline = uv_now(&f->loop) + WAIT_MS;
	while (uv_loop_alive(&f->loop) && uv_now(&f->loop) < deadline) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
		uv_update_time(&f->loop);
	}
	assert_true(f->store_closed);
	assert_true(f->follower_closed);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* A control request to the controller, answered at once. */
static json_t *request(struct fixture *f, const char *cmd, json_t *args)
{
	struct ctl_request req = {.args = args ? args : json_object()};
	snprintf(req.cmd, sizeof(req.cmd), "%s", cmd);
	json_t *result = NULL;
	char *error = NULL;
	int r = sw_handle_request(f->sw, NULL, &req, &result, &error);
	if (r != 0)
		fail_msg("%s: %d %s", cmd, r, error ? error : "");
	json_decref(req.args);
	return result;
}

/* ---- the tests ---- */

static bool handshake_done(struct fixture *f)
{
	return f->fake.hello && f->fake.features_request && f->fake.set_configs &&
	       f->fake.port_desc_requests;
}

/* Hello (version 1.3), features request, then the asynchronous messages
 * asked for whole (set_config) and the ports read. */
static void test_handshake(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	assert_true(run_until(f, handshake_done));
	assert_int_equal(f->fake.miss_send_len, OF13_CML_NO_BUFFER);
	json_t *v = request(f, "switch.local", NULL);
	json_t *s = json_array_get(json_object_get(v, "switches"), 0);
	assert_true(json_is_true(json_object_get(s, "connected")));
	assert_string_equal(json_string_value(json_object_get(s, "dpid")), "00000000000000a1");
	json_decref(v);
}

static bool is_master(struct fixture *f)
{
	return f->fake.role_requests && sw_is_master(f->sw);
}

/* The last role request carries the generation of a committed cluster (a
 * new cluster's leader claims once before its generation 1 is applied,
 * and again after). */
static bool claimed_generation_1(struct fixture *f)
{
	return f->fake.role_requests && f->fake.role.generation_id >> 32 == 1;
}

/* The store leads: MASTER with generation id = the cluster's generation and
 * the store's Raft term. */
static void test_role_master(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	assert_true(run_until(f, claimed_generation_1));
	assert_true(run_until(f, is_master));
	assert_int_equal(f->fake.role.role, OF13_ROLE_MASTER);
	/* The generation ranks first (sw_generation_id()): a new cluster is at 1. */
	assert_true(f->fake.role.generation_id == sw_generation_id(1, store_term(f->store)));
	json_t *v = request(f, "switch.local", NULL);
	json_t *s = json_array_get(json_object_get(v, "switches"), 0);
	assert_string_equal(json_string_value(json_object_get(s, "role")), "master");
	assert_true(json_integer_value(json_object_get(s, "term")) ==
	            (json_int_t)store_term(f->store));
	json_decref(v);
	/* The master polls statistics and flows every interval (100 ms here). */
	unsigned flows = f->fake.multipart[OF13_MP_FLOW];
	unsigned ports = f->fake.multipart[OF13_MP_PORT_STATS];
	unsigned queries = f->fake.queries;
	run_for(f, 500);
	assert_true(f->fake.multipart[OF13_MP_FLOW] >= flows + 3);
	assert_true(f->fake.multipart[OF13_MP_PORT_STATS] >= ports + 3);
	assert_true(f->fake.queries >= queries + 3);
}

static int peer_api(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                    json_t **ret_result, char **ret_error)
{
	return store_handle_request(userdata, client, req, ret_result, ret_error);
}

static bool follows(struct fixture *f)
{
	return f->follower && !store_is_leader(f->follower) && store_term(f->follower) > 0 &&
	       store_leader_id(f->follower) == 1;
}

static bool is_slave(struct fixture *f)
{
	return f->fake.role_requests && f->fake.role.role == OF13_ROLE_SLAVE;
}

/* A member whose store follows: SLAVE, with the term it knows as
 * generation id; it writes nothing to the switch. */
static void test_role_slave(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(
	    ctl_server_start_tcp(&f->peer[0], &f->loop, f->peer_address, peer_api, f->store), 0);
	f->peer_open[0] = true;
	struct store_options o;
	store_options_for(f, 2, &o);
	snprintf(o.seeds[0], sizeof(o.seeds[0]), "%s", f->peer_address);
	o.n_seeds = 1;
	char *error = NULL;
	assert_int_equal(store_open(&f->loop, &o, &f->follower, &error), 0);
	assert_int_equal(
	    ctl_server_start_tcp(&f->peer[1], &f->loop, o.peer_address, peer_api, f->follower), 0);
	f->peer_open[1] = true;
	assert_true(run_until(f, follows));
	open_switches_on(f, f->follower);
	f->svc[0].table = 5;
	assert_int_equal(sw_set_service(f->sw, &test_service_ops, &f->svc[0]), 0);
	assert_true(run_until(f, is_slave));
	assert_true(run_until(f, claimed_generation_1));
	assert_true(f->fake.role.generation_id == sw_generation_id(1, store_term(f->follower)));
	/* A slave polls nothing: over five statistics intervals the switch
	 * is asked for no statistics, no flows and no role. */
	unsigned mp[16], queries = f->fake.queries;
	memcpy(mp, f->fake.multipart, sizeof(mp));
	run_for(f, 500);
	assert_false(sw_is_master(f->sw));
	assert_memory_equal(mp, f->fake.multipart, sizeof(mp));
	assert_int_equal(f->fake.queries, queries);
	assert_int_equal(f->fake.flow_mods, 0);
	json_t *v = request(f, "switch.local", NULL);
	json_t *s = json_array_get(json_object_get(v, "switches"), 0);
	assert_string_equal(json_string_value(json_object_get(s, "role")), "slave");
	json_decref(v);
	/* Asked, a slave reads the switch's flows once, and the services
	 * get them (a NAT block waiting to be steered, services/nat). */
	unsigned reads = f->fake.flow_reads, calls = f->svc[0].installed_calls;
	assert_int_equal(sw_read_flows(f->sw, FAKE_DPID), 0);
	assert_int_equal(sw_read_flows(f->sw, FAKE_DPID), 0); /* the read under way answers */
	assert_int_equal(sw_read_flows(f->sw, 0xbad), -ENOTCONN);
	run_for(f, 50);
	assert_int_equal(f->fake.flow_reads, reads + 1);
	assert_int_equal(f->svc[0].installed_calls, calls + 1);
	assert_non_null(sw_installed(f->sw, FAKE_DPID));
	assert_null(sw_installed(f->sw, 0xbad));
}

static bool service_flows_there(struct fixture *f)
{
	const struct of13_flow_mod *a = fake_find(&f->fake, 5, 10);
	const struct of13_flow_mod *b = fake_find(&f->fake, 5, 20);
	return a && b && !fake_find(&f->fake, 5, 30) && f->fake.barriers > 0;
}

static void preload(struct fixture *f)
{
	/* One desired flow already there, one stale ETTM flow, and one flow
	 * that is not ETTM's (the lab's start-up flows). */
	f->fake.table[0] = service_flow(5, 10, 1);
	f->fake.table[1] = service_flow(5, 30, 3);
	f->fake.table[2] = service_flow(5, 40, 4);
	f->fake.table[2].cookie = FOREIGN;
	f->fake.n_table = 3;
}

/* The master reads the switch's flows back and repairs the difference:
 * the missing flow added, the stale one deleted, the desired one already
 * there not sent again, another cookie's flow left alone. */
static void test_reconcile(void **state)
{
	struct fixture *f = *state;
	preload(f);
	open_switches(f);
	f->svc[0].table = 5;
	assert_int_equal(sw_set_service(f->sw, &test_service_ops, &f->svc[0]), 0);
	assert_true(run_until(f, service_flows_there));
	assert_true(f->fake.flow_reads > 0);
	assert_true(f->svc[0].calls > 0);
	assert_true(f->fake.flow_deletes >= 1);
	const struct of13_flow_mod *foreign = fake_find(&f->fake, 5, 40);
	assert_non_null(foreign);
	assert_true(foreign->cookie == FOREIGN);
	/* What `ettmctl flows` shows: nothing missing, nothing unexpected. */
	json_t *r = request(f, "flows", json_pack("{s:s}", "switch", "s1"));
	assert_int_equal(json_integer_value(json_object_get(r, "missing")), 0);
	assert_int_equal(json_integer_value(json_object_get(r, "unexpected")), 0);
	json_decref(r);
}

static bool drift_repaired(struct fixture *f)
{
	return fake_find(&f->fake, 5, 20) != NULL;
}

static bool read_again(struct fixture *f)
{
	return f->fake.flow_reads >= 2 && f->svc[0].installed_calls >= 2;
}

/* A flow removed behind the master's back is back after the next
 * statistics round (stats-interval 100 ms here). */
static void test_drift(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	f->svc[0].table = 5;
	assert_int_equal(sw_set_service(f->sw, &test_service_ops, &f->svc[0]), 0);
	assert_true(run_until(f, service_flows_there));
	assert_true(run_until(f, read_again));
	/* Someone deletes one of ETTM's flows. */
	for (size_t i = 0; i < f->fake.n_table; i++)
		if (f->fake.table[i].priority == 20)
			f->fake.table[i] = f->fake.table[--f->fake.n_table];
	assert_null(fake_find(&f->fake, 5, 20));
	unsigned reads = f->fake.flow_reads;
	assert_true(run_until(f, drift_repaired));
	assert_true(f->fake.flow_reads > reads);
}

/* Any number of services: each one's flows reach the switch (there were
 * at most four before). */
static bool all_services_there(struct fixture *f)
{
	for (unsigned i = 0; i < N_SERVICES; i++)
		if (!fake_find(&f->fake, (uint8_t)(10 + i), 10) ||
		    !fake_find(&f->fake, (uint8_t)(10 + i), 20))
			return false;
	return true;
}

static void test_many_services(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	for (unsigned i = 0; i < N_SERVICES; i++) {
		f->svc[i].table = (uint8_t)(10 + i);
		assert_int_equal(sw_set_service(f->sw, &test_service_ops, &f->svc[i]), 0);
	}
	assert_true(run_until(f, all_services_there));
	/* Removing one removes its flows from the switch. */
	assert_int_equal(sw_set_service(f->sw, NULL, &f->svc[2]), 0);
	f->svc[2].calls = 0;
	run_for(f, 500);
	assert_int_equal(f->svc[2].calls, 0);
	assert_null(fake_find(&f->fake, 12, 10));
	assert_non_null(fake_find(&f->fake, 13, 10));
}

static const char *port_state(struct fixture *f, unsigned port_no)
{
	static char state[8];
	json_t *v = request(f, "switch.local", NULL);
	json_t *ports = json_object_get(json_array_get(json_object_get(v, "switches"), 0), "ports");
	size_t i;
	json_t *p;
	state[0] = 0;
	json_array_foreach(ports, i, p)
	{
		if (json_integer_value(json_object_get(p, "port")) == port_no)
			snprintf(state, sizeof(state), "%s",
			         json_string_value(json_object_get(p, "state")));
	}
	json_decref(v);
	return state;
}

static bool ports_known(struct fixture *f)
{
	struct sw_port_ref refs[1];
	bool up[1];
	return handshake_done(f) && sw_uplinks(f->sw, refs, up) == 1 && refs[0].port == 3;
}

static bool port2_down(struct fixture *f)
{
	return strcmp(port_state(f, 2), "down") == 0;
}

/* The port description gives the ports (and the uplink's port number, by
 * name); a port status message changes one; a deleted port goes. */
static void test_ports(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	assert_true(run_until(f, ports_known));
	assert_string_equal(port_state(f, 2), "up");
	struct of13_port_status ps = {.reason = OF13_PORT_MODIFY, .port = f->fake.ports[1]};
	ps.port.state = OF13_PORT_STATE_LINK_DOWN;
	struct obuf b = {0};
	of13_port_status_encode(&b, 0, &ps);
	fake_send(&f->fake, &b);
	assert_true(run_until(f, port2_down));
	struct sw_port_ref refs[1];
	bool up[1];
	assert_int_equal(sw_uplinks(f->sw, refs, up), 1);
	assert_true(up[0]);
	ps = (struct of13_port_status){.reason = OF13_PORT_DELETE, .port = f->fake.ports[2]};
	of13_port_status_encode(&b, 0, &ps);
	fake_send(&f->fake, &b);
	run_for(f, 200);
	assert_int_equal(sw_uplinks(f->sw, refs, up), 1);
	assert_int_equal(refs[0].port, 0);
	assert_false(up[0]);
	assert_string_equal(port_state(f, 3), "");
}

static json_t *local_switch(struct fixture *f, const char *key)
{
	json_t *v = request(f, "switch.local", NULL);
	json_t *r =
	    json_incref(json_object_get(json_array_get(json_object_get(v, "switches"), 0), key));
	json_decref(v);
	return r;
}

static bool all_ports_counted(struct fixture *f)
{
	json_t *ports = local_switch(f, "ports");
	bool ok = json_array_size(ports) == FAKE_PORTS;
	size_t i;
	json_t *p;
	json_array_foreach(ports, i, p)
	{
		ok &= json_integer_value(json_object_get(p, "rx_packets")) ==
		      json_integer_value(json_object_get(p, "port"));
	}
	json_decref(ports);
	return ok;
}

/* A switch of 1,100 ports that describes them, and counts them, in parts
 * of 300: every port is known, with its counters, and the uplink's port is
 * found in the last part. */
static void test_a_switch_of_many_ports(void **state)
{
	struct fixture *f = *state;
	fake_ports(&f->fake, FAKE_PORTS);
	f->fake.ports_per_part = 300;
	snprintf(f->fake.ports[FAKE_PORTS - 1].name, sizeof(f->fake.ports[0].name), "p3");
	snprintf(f->fake.ports[2].name, sizeof(f->fake.ports[0].name), "x3");
	open_switches(f);
	assert_true(run_until(f, all_ports_counted));
	struct sw_port_ref refs[1];
	bool up[1];
	assert_int_equal(sw_uplinks(f->sw, refs, up), 1);
	assert_int_equal(refs[0].port, FAKE_PORTS);
	assert_true(up[0]);
}

static bool echo_answered(struct fixture *f)
{
	return f->fake.echo_replied;
}

static bool echo_asked(struct fixture *f)
{
	return f->fake.echo_requests > 0;
}

/* The controller answers the switch's echo with its data, and sends its
 * own to keep the connection alive. */
static void test_echo(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	assert_true(run_until(f, handshake_done));
	struct obuf b = {0};
	of13_simple_encode(&b, OF13_ECHO_REQUEST, 0x1234, "ping", 4);
	fake_send(&f->fake, &b);
	assert_true(run_until(f, echo_answered));
	assert_int_equal(f->fake.echo_xid, 0x1234);
	assert_string_equal(f->fake.echo_data, "ping");
	assert_true(run_until(f, echo_asked));
}

/* ---- mastership under attack ---- */

static bool master_again(struct fixture *f);

/* Master of generation 1, with the service's flows on the switch. */
static struct fixture *master_with_flows(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	f->svc[0].table = 5;
	assert_int_equal(sw_set_service(f->sw, &test_service_ops, &f->svc[0]), 0);
	assert_true(run_until(f, master_again));
	assert_true(run_until(f, service_flows_there));
	return f;
}

static bool not_master(struct fixture *f)
{
	return !sw_is_master(f->sw);
}

static bool master_again(struct fixture *f)
{
	return sw_is_master(f->sw) && f->fake.conn_role == OF13_ROLE_MASTER &&
	       f->fake.max_generation == sw_generation_id(1, store_term(f->store));
}

/* Another controller claims MASTER with generation id 2^63 (ahead of
 * every id ETTM issues, by the signed comparison). The deposed master
 * learns it at its first refused write, stops, and claims the switch
 * back by walking the switch's memory round to its own id; the flow
 * someone deleted meanwhile comes back. */
static void test_deposed_by_foreign_id(void **state)
{
	struct fixture *f = master_with_flows(state);
	fake_attack(&f->fake, 1ull << 63);
	for (size_t i = 0; i < f->fake.n_table; i++)
		if (f->fake.table[i].table_id == 5 && f->fake.table[i].priority == 20)
			f->fake.table[i] = f->fake.table[--f->fake.n_table];
	assert_true(run_until(f, not_master));
	json_t *role = local_switch(f, "role");
	assert_string_not_equal(json_string_value(role), "master");
	json_decref(role);
	assert_true(run_until(f, master_again));
	assert_true(run_until(f, drift_repaired));
	assert_true(f->fake.stale_refusals >= 1);
	/* Refused once each, never sent again while refused. */
	assert_true(f->fake.writes_as_slave >= 1 && f->fake.writes_as_slave <= 2);
	json_t *deposals = local_switch(f, "deposals");
	assert_int_equal(json_integer_value(deposals), 1);
	json_decref(deposals);
	json_t *seen = local_switch(f, "generation_seen");
	assert_non_null(seen);
	json_decref(seen);
}

/* Deposed while it has nothing to write: the periodic NOCHANGE query
 * tells it (stats-interval 100 ms here), and nothing is written while it
 * is not master. */
static void test_deposed_by_query(void **state)
{
	struct fixture *f = master_with_flows(state);
	unsigned queries = f->fake.queries;
	fake_attack(&f->fake, 1ull << 63);
	assert_true(run_until(f, not_master));
	assert_true(run_until(f, master_again));
	assert_true(f->fake.queries > queries);
	assert_int_equal(f->fake.writes_as_slave, 0);
}

static bool newer_claim_answered(struct fixture *f)
{
	return f->fake.stale_refusals >= 1 && f->fake.queries >= 2;
}

/* The switch holds the claim of a newer generation (2, term 1; ours is
 * generation 1): this agent is the stale one. It never takes the switch
 * back, and does not ask again in this term. */
static void test_newer_generation_kept(void **state)
{
	struct fixture *f = master_with_flows(state);
	uint64_t newer = sw_generation_id(2, 1);
	fake_attack(&f->fake, newer);
	assert_true(run_until(f, not_master));
	assert_true(run_until(f, newer_claim_answered));
	unsigned requests = f->fake.role_requests;
	run_for(f, 1000);
	assert_false(sw_is_master(f->sw));
	assert_true(f->fake.max_generation == newer);
	assert_int_equal(f->fake.conn_role, OF13_ROLE_SLAVE);
	assert_int_equal(f->fake.role_requests, requests);
	assert_int_equal(f->fake.writes_as_slave, 0);
}

/* Another controller takes the switch back each time: the agent claims
 * again after a wait that doubles (100 ms, 200, 400 ...), never in a
 * loop. In 2 s, at most five or six claims. */
static void test_reclaim_backs_off(void **state)
{
	struct fixture *f = master_with_flows(state);
	unsigned requests = f->fake.role_requests;
	f->fake.attacker = true;
	run_for(f, 2000);
	unsigned claims = f->fake.role_requests - requests;
	assert_true(f->fake.attacks >= 2);
	assert_true(claims >= 2 && claims <= 14);
	assert_true(f->fake.attacks <= 7);
	assert_true(f->fake.writes_as_slave <= 2 * f->fake.attacks);
}

static bool two_voters(struct fixture *f)
{
	uint64_t ids[4];
	return store_voters(f->store, ids, 4) == 2;
}

static bool leaderless(struct fixture *f)
{
	return !store_is_leader(f->store) && store_leader_id(f->store) == 0;
}

static bool startup_flows_back(struct fixture *f)
{
	unsigned n = 0;
	for (size_t i = 0; i < f->fake.n_table; i++)
		n += f->fake.table[i].cookie == SW_STARTUP_COOKIE;
	return n == 6;
}

/* The leader's store loses its majority (the other voter goes) and no one
 * leads: it stays master of the switch, and when every flow is deleted it
 * puts the start-up flows back (without them no leader could be elected),
 * and nothing else. */
static void test_masterless_restores_startup_flows(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(
	    ctl_server_start_tcp(&f->peer[0], &f->loop, f->peer_address, peer_api, f->store), 0);
	f->peer_open[0] = true;
	struct store_options o;
	store_options_for(f, 2, &o);
	snprintf(o.seeds[0], sizeof(o.seeds[0]), "%s", f->peer_address);
	o.n_seeds = 1;
	char *error = NULL;
	assert_int_equal(store_open(&f->loop, &o, &f->follower, &error), 0);
	assert_int_equal(
	    ctl_server_start_tcp(&f->peer[1], &f->loop, o.peer_address, peer_api, f->follower), 0);
	f->peer_open[1] = true;
	assert_true(run_until(f, follows));
	assert_true(run_until(f, two_voters));
	master_with_flows(state);
	ctl_server_close(&f->peer[1], NULL);
	f->peer_open[1] = false;
	store_close(f->follower, follower_closed, f);
	f->follower = NULL;
	f->follower_closing = true;
	assert_true(run_until(f, leaderless));
	run_for(f, 200);
	assert_int_equal(f->fake.conn_role, OF13_ROLE_MASTER);
	json_t *role = local_switch(f, "role");
	assert_string_equal(json_string_value(role), "master");
	json_decref(role);
	f->fake.n_table = 0;
	assert_true(run_until(f, startup_flows_back));
	run_for(f, 300);
	assert_int_equal(f->fake.n_table, 6);
	assert_int_equal(f->fake.writes_as_slave, 0);
}

/* switch.bench is a benchmark's hook: answered only by a build with
 * -Dbench_hooks=true; otherwise not the controller's command at all. */
static void test_bench_hook(void **state)
{
	struct fixture *f = *state;
	open_switches(f);
	struct ctl_request req = {.cmd = "switch.bench", .args = json_object()};
	json_t *result = NULL;
	char *error = NULL;
	int r = sw_handle_request(f->sw, NULL, &req, &result, &error);
#ifdef ETTM_BENCH_HOOKS
	assert_int_equal(r, -EINVAL);
	assert_non_null(error);
#else
	assert_int_equal(r, -ENOENT);
	assert_null(error);
#endif
	assert_null(result);
	free(error);
	json_decref(req.args);
}

/* ---- a switch that closes every connection at once ---- */

struct refuser {
	uv_tcp_t listener;
	unsigned accepted;
};

static void refuser_accept(uv_stream_t *server, int status)
{
	struct refuser *r = server->data;
	assert_int_equal(status, 0);
	uv_tcp_t *c = malloc(sizeof(*c));
	uv_tcp_init(server->loop, c);
	assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
	r->accepted++;
	uv_close((uv_handle_t *)c, (uv_close_cb)free);
}

static const struct of_conn_ops quiet_ops = {0};

static void stop_loop(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* As Open vSwitch does to a controller whose certificate it refuses: the
 * agent tries again once a second, not in a loop. */
static void test_refused_connection_retried_each_second(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct refuser r = {0};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uv_tcp_init(&loop, &r.listener);
	r.listener.data = &r;
	assert_int_equal(uv_tcp_bind(&r.listener, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&r.listener, 16, refuser_accept), 0);
	int len = sizeof(sa);
	uv_tcp_getsockname(&r.listener, (struct sockaddr *)&sa, &len);
	char address[32];
	snprintf(address, sizeof(address), "127.0.0.1:%u", ntohs(sa.sin_port));
	struct of_conn *c = NULL;
	assert_int_equal(of_conn_open(&loop, address, NULL, &quiet_ops, NULL, &c), 0);
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, stop_loop, 2500, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* At 0, 1 and 2 s: three, where a loop made thousands. */
	assert_true(r.accepted >= 2 && r.accepted <= 4);
	of_conn_close(c);
	uv_close((uv_handle_t *)&t, NULL);
	uv_close((uv_handle_t *)&r.listener, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
	    cmocka_unit_test(test_refused_connection_retried_each_second),
	    cmocka_unit_test_setup_teardown(test_role_master, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_role_slave, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drift, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_services, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_switch_of_many_ports, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bench_hook, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deposed_by_foreign_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deposed_by_query, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_newer_generation_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reclaim_backs_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_masterless_restores_startup_flows, setup,
	                                    teardown),
	};
	register_all_tables();
	/* A store closed under its peers' writes: as ettmd does. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
