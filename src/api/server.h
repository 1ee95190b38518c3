/* The control socket server: a unix stream socket on the agent's libuv loop,
 * speaking the line protocol of proto.h. */
#pragma once

#include <uv.h>

#include "proto.h"

/* Answers one request: returns 0 with *ret_result (may stay NULL for {}), or
 * a negative errno with a newly allocated *ret_error. */
typedef int (*ctl_handler_fn)(void *userdata, const struct ctl_request *req, json_t **ret_result,
                              char **ret_error);

struct ctl_client;

struct ctl_server {
	uv_pipe_t pipe;
	uv_loop_t *loop;
	ctl_handler_fn handler;
	void *userdata;
	char path[108];
	struct ctl_client *clients;
	void (*close_cb)(struct ctl_server *server);
	int open_handles;
};

/* Listens on @path (mode 0600). A stale socket file left by a dead agent is
 * replaced; a live one is not (-EADDRINUSE). Returns 0 or a negative errno. */
int ctl_server_start(struct ctl_server *server, uv_loop_t *loop, const char *path,
                     ctl_handler_fn handler, void *userdata);

/* Closes the listener and every client, removes the socket file, and calls
 * @close_cb (may be NULL) once every handle is closed. */
void ctl_server_close(struct ctl_server *server, void (*close_cb)(struct ctl_server *server));
