/* The control socket server: a unix stream socket (ettmctl) or a TCP socket
 * (the agents' peer API) on the agent's libuv loop, speaking the line
 * protocol of proto.h. */
#pragma once

#include <stdint.h>

#include <netinet/in.h>

#include <uv.h>

#include "proto.h"

struct ctl_client;
struct ctl_deferred;
struct ctl_tls;

/* Room for a host name (the store's STORE_NAME_MAX). */
#define CTL_PEER_HOST_MAX 32

/* A handler's return value meaning "I will answer later" (ctl_defer()). */
#define CTL_DEFERRED 1

/* Answers one request from @client: returns 0 with *ret_result (may stay
 * NULL for {}), a negative errno with a newly allocated *ret_error, or
 * CTL_DEFERRED after ctl_defer(). */
typedef int (*ctl_handler_fn)(void *userdata, struct ctl_client *client,
                              const struct ctl_request *req, json_t **ret_result, char **ret_error);

/* Keeps the reply to @req for later: the handler returns CTL_DEFERRED and
 * calls ctl_deferred_reply() exactly once, even if the client has gone in
 * the meantime (the reply is then dropped). NULL when out of memory. */
struct ctl_deferred *ctl_defer(struct ctl_client *client, const struct ctl_request *req);

/* Sends the deferred reply: @result (stolen) when @error is NULL, else
 * @error. Frees @d. */
void ctl_deferred_reply(struct ctl_deferred *d, json_t *result, const char *error);

/* A number that names @client's connection: unique among the connections
 * this process accepted, never reused (a session bound to it cannot be
 * answered on another connection, even one that got the same memory). */
uint64_t ctl_client_id(const struct ctl_client *client);

/* The address a TCP client connects from, into *ret_addr: 0, or -ENOTCONN
 * on the unix socket (or when the kernel could not tell). */
int ctl_client_source(const struct ctl_client *client, struct in_addr *ret_addr);

/* The admitted host whose key the peer presented on this TLS connection, as
 * the gate (tls.h) said at the connection's last request; NULL when the key
 * is no admitted host's, and on the admin's socket and plaintext ones (then
 * who may ask what is judged by ctl_client_source(): src/ettmd/peers.h). */
const char *ctl_client_peer_host(const struct ctl_client *client);

/* The fingerprint (hex SHA-256 of the SubjectPublicKeyInfo) of the key the
 * peer presented on this TLS connection; NULL when not over TLS. */
const char *ctl_client_peer_fp(const struct ctl_client *client);

struct ctl_server {
	union {
		uv_pipe_t pipe;
		uv_tcp_t tcp;
		uv_stream_t stream;
	};
	bool is_tcp;
	struct ctl_tls *tls; /* TCP over TLS: ctl_tls_default() at start */
	uv_loop_t *loop;
	ctl_handler_fn handler;
	void *userdata;
	/* Told, with @userdata, of each request the TLS gate refused before
	 * the handler: it may account for it (a rate, a log) and may replace
	 * the reason the client gets (*inout_reason, malloc'd). NULL: none. */
	void (*refused)(void *userdata, struct ctl_client *client, const struct ctl_request *req,
	                char **inout_reason);
	char path[108];
	struct ctl_client *clients;
	void (*close_cb)(struct ctl_server *server);
	int open_handles;
};

/* Listens on @path (mode 0600). A stale socket file left by a dead agent is
 * replaced; a live one is not (-EADDRINUSE). Returns 0 or a negative errno. */
int ctl_server_start(struct ctl_server *server, uv_loop_t *loop, const char *path,
                     ctl_handler_fn handler, void *userdata);

/* Listens on TCP @address ("A.B.C.D:PORT"), for the agents' peer API: over
 * mutual TLS 1.3 with the identity of ctl_tls_default() when there is one
 * (each request is then put to its gate first), else in plaintext.
 * Returns 0 or a negative errno. */
int ctl_server_start_tcp(struct ctl_server *server, uv_loop_t *loop, const char *address,
                         ctl_handler_fn handler, void *userdata);

/* Splits "A.B.C.D:PORT" into a socket address. Returns 0 or -EINVAL. */
int ctl_parse_address(const char *address, struct sockaddr_in *ret_sa);

/* Closes the listener and every client, removes the socket file, and calls
 * @close_cb (may be NULL) once every handle is closed. */
void ctl_server_close(struct ctl_server *server, void (*close_cb)(struct ctl_server *server));
