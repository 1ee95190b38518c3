/* NAT-PMP (RFC 6886) and PCP (RFC 6887) served to this host's guest on the
 * control address (nat-internal.h): a request becomes mappings proposed to
 * the store, answered once they are committed. pmp.c is the codec. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/datapath.h"
#include "lib/addr.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "services/nat/nat-internal.h"
#include "services/nat/pmp.h"
#include "services/nat/tables.h"
#include "store/store.h"

#define PMP_MAX_LIFETIME   86400 /* seconds a requested mapping may last */
#define PMP_ERROR_LIFETIME 30    /* seconds a PCP client may cache an error */

/* One request, until its commands are answered. */
struct pmp_call {
	struct nat *n;
	struct sockaddr_in to;
	struct pmp_request req;
	struct pmp_response res;
	unsigned pending; /* commands not answered yet */
	bool failed;
	bool answered; /* the reply went already (an error before the commits) */
	bool mapping;  /* a map request: a refused commit is chosen again */
	struct nat_map_ask ask;
};

static void pmp_send(struct nat *n, const struct sockaddr_in *to, struct pmp_response *res)
{
	uint8_t out[PMP_MAX_MESSAGE];
	res->epoch = (uint32_t)((uv_now(n->loop) - n->started_ms) / 1000);
	if (res->result != PMP_SUCCESS && res->version != PMP_VERSION_NATPMP)
		res->lifetime = PMP_ERROR_LIFETIME;
	size_t len = pmp_encode(res, out, sizeof(out));
	if (len == 0)
		return;
	uv_buf_t buf = uv_buf_init((char *)out, (unsigned)len);
	if (uv_udp_try_send(&n->pmp, &buf, 1, (const struct sockaddr *)to) < 0)
		log_debug("nat: port mapping reply not sent");
}

static void pmp_committed(void *userdata, int status, const struct store_result *res,
                          const char *error);

static int pmp_propose(struct pmp_call *call, enum store_op op, const struct nat_mapping *m)
{
	int r = nat_inbound_propose(call->n, op, m, pmp_committed, call);
	if (r == 0)
		call->pending++;
	return r;
}

/* Lifetime 0: the guest's mappings of the port (all of them for port 0, or
 * protocol 0) go. */
static enum pmp_result pmp_delete(struct nat *n, struct pmp_call *call)
{
	const struct store_state *st = nat_state(n);
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (m->owner != n->self || m->expires_ms == 0 ||
		    (call->req.protocol && m->proto != call->req.protocol) ||
		    (call->req.internal_port && m->guest_port != call->req.internal_port))
			continue;
		if (pmp_propose(call, STORE_DELETE, m) < 0)
			return PMP_NETWORK_FAILURE;
	}
	call->res.external_port = 0;
	call->res.lifetime = 0;
	return PMP_SUCCESS;
}

/* Proposes the mapping nat_map_next() chooses on this replica now; the
 * response names the port proposed, so a choice made again after a refusal
 * is what the client is told. */
static enum pmp_result pmp_map(struct nat *n, struct pmp_call *call)
{
	const struct pmp_request *q = &call->req;
	uint16_t port;
	switch (nat_map_next(nat_state(n), n->self, &call->ask, &port)) {
	case 0:
		break;
	case -EEXIST:
		return PMP_CANNOT_PROVIDE_EXTERNAL;
	case -EPERM:
		return PMP_NOT_AUTHORIZED; /* the admin's mapping: not the guest's to change */
	default:
		return PMP_NO_RESOURCES;
	}
	uint32_t lifetime = q->lifetime < PMP_MAX_LIFETIME ? q->lifetime : PMP_MAX_LIFETIME;
	struct nat_mapping m = {
	    .proto = q->protocol,
	    .public_port = port,
	    .owner = n->self,
	    .guest_addr = ntohl(n->dp->cfg.guest_addr.s_addr),
	    .guest_port = q->internal_port,
	    .expires_ms = wall_ms() + (uint64_t)lifetime * 1000,
	};
	if (pmp_propose(call, STORE_PUT, &m) < 0)
		return PMP_NETWORK_FAILURE;
	call->res.external_port = port;
	call->res.lifetime = lifetime;
	return PMP_SUCCESS;
}

/* A map request's commit the store refused: another host's mapping or
 * block took the port first. This replica has applied the winner by now,
 * so the next choice avoids it. Returns true when a new proposal is under
 * way. */
static bool pmp_map_again(struct pmp_call *call, const struct store_result *res)
{
	struct nat *n = call->n;
	call->ask.refused++;
	log_info("nat: public port %u/%s for the guest's port %u not committed (%s); choosing "
	         "again",
	         call->res.external_port, nat_proto_name(call->req.protocol),
	         call->req.internal_port, res->reason);
	enum pmp_result r = pmp_map(n, call);
	if (r == PMP_SUCCESS)
		return true;
	call->res.result = r;
	return false;
}

static void pmp_committed(void *userdata, int status, const struct store_result *res,
                          const char *error)
{
	struct pmp_call *call = userdata;
	call->pending--;
	if (status == 0 && !res->applied && call->mapping && !call->answered &&
	    pmp_map_again(call, res))
		return;
	if (status < 0 || !res->applied) {
		log_info("nat: port mapping not committed: %s", status < 0 ? error : res->reason);
		call->failed = true;
	}
	if (call->pending)
		return;
	if (call->failed) {
		if (call->res.result == PMP_SUCCESS)
			call->res.result = status < 0 ? PMP_NETWORK_FAILURE : PMP_NO_RESOURCES;
		call->res.external_port = 0;
		call->res.lifetime = 0;
	}
	if (!call->answered)
		pmp_send(call->n, &call->to, &call->res);
	free(call);
}

/* The result for @call's request that decoded as @r: only this host's guest
 * may ask, for itself, once this host holds a block. */
static enum pmp_result pmp_serve(struct nat *n, struct pmp_call *call, enum pmp_result r)
{
	const struct pmp_request *q = &call->req;
	if (r == PMP_SUCCESS && call->to.sin_addr.s_addr != n->dp->cfg.guest_addr.s_addr)
		r = PMP_NOT_AUTHORIZED;
	if (r == PMP_SUCCESS && q->version == PMP_VERSION_PCP &&
	    q->client.s_addr != call->to.sin_addr.s_addr)
		r = PMP_ADDRESS_MISMATCH;
	pmp_response_for(q, r, &call->res);
	call->res.external = n->o.publics[n->uplink];
	bool mapping = q->version == PMP_VERSION_NATPMP ? q->opcode != PMP_OP_ADDRESS
	                                                : q->opcode == PCP_OP_MAP;
	if (r == PMP_SUCCESS && mapping && (!n->synced || !nat_blocks_of(nat_state(n), n->self)))
		r = PMP_NETWORK_FAILURE; /* not ready: no block yet */
	if (r == PMP_SUCCESS && mapping && q->lifetime == 0)
		return pmp_delete(n, call);
	if (r == PMP_SUCCESS && mapping) {
		call->mapping = true;
		call->ask = (struct nat_map_ask){.proto = q->protocol,
		                                 .guest_port = q->internal_port,
		                                 .suggested = q->external_port,
		                                 .prefer_failure = q->prefer_failure};
		r = pmp_map(n, call);
	}
	return r;
}

static void pmp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags)
{
	struct nat *n = h->data;
	(void)flags;
	if (nread <= 0 || !addr || addr->sa_family != AF_INET)
		return;
	struct pmp_call *call = calloc(1, sizeof(*call));
	if (!call)
		return;
	call->n = n;
	memcpy(&call->to, addr, sizeof(call->to));
	enum pmp_result r = pmp_decode((const uint8_t *)buf->base, (size_t)nread, &call->req);
	if (r == PMP_DROP) {
		free(call);
		return;
	}
	r = pmp_serve(n, call, r);
	call->res.result = r;
	if (r != PMP_SUCCESS) {
		call->res.external_port = 0;
		call->res.lifetime = 0;
	}
	char from[ADDR_STR_MAX];
	log_debug("nat: %s request op %u port %u from %s: %s",
	          call->req.version == PMP_VERSION_NATPMP ? "NAT-PMP" : "PCP", call->req.opcode,
	          call->req.internal_port, addr_format(call->to.sin_addr, from),
	          pmp_result_name(r));
	if (call->pending == 0 || r != PMP_SUCCESS) {
		pmp_send(n, &call->to, &call->res);
		call->answered = true;
		if (call->pending == 0)
			free(call);
	}
}

static void pmp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char space[PMP_MAX_MESSAGE + 4];
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(space, sizeof(space));
}

int nat_pmp_server_open(struct nat *n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(PMP_PORT),
	                         .sin_addr = n->dp->cfg.control_addr};
	int r = uv_udp_init(n->loop, &n->pmp);
	if (r < 0)
		return r;
	n->pmp.data = n;
	n->pmp_open = true;
	r = uv_udp_bind(&n->pmp, (const struct sockaddr *)&sa, UV_UDP_REUSEADDR);
	if (r == 0)
		r = uv_udp_recv_start(&n->pmp, pmp_alloc, pmp_recv);
	return r;
}
