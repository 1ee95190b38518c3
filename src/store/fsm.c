#include "fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct store_fsm *f = (struct store_fsm *)fsm;
	struct store_cmd cmd;
	char *error = NULL;
	struct store_result *res = &f->result;
	if (store_cmd_decode(buf->base, buf->len, &cmd, &error) < 0) {
		/* A replica never guesses at a corrupt entry: it stops. */
		if (f->corrupt)
			f->corrupt(f->userdata, error ? error : "a corrupt command");
		free(error);
		return RAFT_CORRUPT;
	}
	if (store_state_apply(f->state, &cmd, res) < 0) {
		store_cmd_done(&cmd);
		return RAFT_NOMEM;
	}
	if (f->applied)
		f->applied(f->userdata, buf, &cmd, res);
	store_cmd_done(&cmd);
	*result = res;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store_fsm *f = (struct store_fsm *)fsm;
	uint8_t *data;
	size_t len;
	if (store_state_snapshot(f->state, &data, &len) < 0)
		return RAFT_NOMEM;
	struct raft_buffer *b = raft_malloc(sizeof(*b));
	void *copy = raft_malloc(len);
	if (!b || !copy) {
		raft_free(b);
		raft_free(copy);
		free(data);
		return RAFT_NOMEM;
	}
	memcpy(copy, data, len);
	free(data);
	*b = (struct raft_buffer){.base = copy, .len = len};
	*bufs = b;
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct store_fsm *f = (struct store_fsm *)fsm;
	char *error = NULL;
	if (store_state_restore(f->state, buf->base, buf->len, &error) < 0) {
		if (f->corrupt)
			f->corrupt(f->userdata, error ? error : "a corrupt snapshot");
		free(error);
		return RAFT_CORRUPT;
	}
	raft_free(buf->base);
	return 0;
}

void store_fsm_init(struct store_fsm *f, struct store_state *state)
{
	*f = (struct store_fsm){.state = state};
	f->fsm = (struct raft_fsm){.version = 1,
	                           .data = f,
	                           .apply = fsm_apply,
	                           .snapshot = fsm_snapshot,
	                           .restore = fsm_restore};
}

void *store_fsm_entry(const void *data, size_t len, size_t *ret_len)
{
	size_t padded = (len + 7) & ~(size_t)7;
	void *copy = raft_malloc(padded);
	if (!copy)
		return NULL;
	memset(copy, 0, padded);
	memcpy(copy, data, len);
	*ret_len = padded;
	return copy;
}
