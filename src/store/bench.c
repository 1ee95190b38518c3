/* store.bench, only in builds with -Dbench_hooks=true: commit latency and
 * throughput through store_propose(), for bench/store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/server.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "store-internal.h"

struct bench;
static void bench_step(struct bench *b);

/* ---- store.bench: commit latency and throughput through store_propose() ---- */

/* Each command is a 64-byte lease put, compared in bench/RESULTS.md with
 * bare libraft's 64-byte entries. The leases stay in the table (hosts named
 * "bench-..."): run it on lab clusters only. */
struct bench {
	struct store *s;
	struct ctl_deferred *d;
	unsigned count, burst, inflight;
	unsigned sent, done, phase;
	uint64_t *lat_ns;
	uint64_t burst_t0;
	int failed;
	char error[STORE_REASON_MAX + 128];
};

struct bench_req {
	struct bench *b;
	uint64_t t0;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void bench_finish(struct bench *b)
{
	if (b->failed) {
		ctl_deferred_reply(b->d, NULL, b->error);
	} else {
		double secs = (double)(uv_hrtime() - b->burst_t0) / 1e9;
		qsort(b->lat_ns, b->count, sizeof(uint64_t), cmp_u64);
		ctl_deferred_reply(b->d,
		                   json_pack("{s:s, s:i, s:f, s:f, s:i, s:i, s:f}", "impl", "ettmd",
		                             "count", b->count, "median_us",
		                             (double)b->lat_ns[b->count / 2] / 1e3, "p99_us",
		                             (double)b->lat_ns[b->count * 99 / 100] / 1e3, "burst",
		                             b->burst, "inflight", b->inflight, "commits_per_s",
		                             (double)b->burst / secs),
		                   NULL);
	}
	free(b->lat_ns);
	free(b);
}

static void bench_done(void *userdata, int status, const struct store_result *res,
                       const char *error)
{
	struct bench_req *r = userdata;
	struct bench *b = r->b;
	if (status < 0 && !b->failed) {
		b->failed = status;
		snprintf(b->error, sizeof(b->error), "%s", error ? error : "failed");
	}
	(void)res;
	if (b->phase == 0 && !b->failed)
		b->lat_ns[b->done] = uv_hrtime() - r->t0;
	free(r);
	b->done++;
	if (b->phase == 0 && b->done == b->count) {
		b->phase = 1;
		b->sent = b->done = 0;
		b->burst_t0 = uv_hrtime();
	} else if (b->phase == 1 && b->done == b->burst) {
		bench_finish(b);
		return;
	}
	bench_step(b);
}

static void bench_send(struct bench *b)
{
	unsigned n = b->phase * b->count + b->sent;
	struct store_cmd cmd = {.table = STORE_LEASES, .op = STORE_PUT, .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct store_lease)->mac,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_lease)->mac), "02:00:%02x:%02x:%02x:%02x",
	         (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
	STORE_CMD_ROW(&cmd, struct store_lease)->addr = 0x0a000000u + n;
	snprintf(STORE_CMD_ROW(&cmd, struct store_lease)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct store_lease)->host), "bench-%012u", n);
	struct bench_req *r = calloc(1, sizeof(*r));
	r->b = b;
	r->t0 = uv_hrtime();
	b->sent++;
	int err = store_propose(b->s, &cmd, bench_done, r);
	if (err < 0) {
		free(r);
		bench_done(&(struct bench_req){.b = b}, err, NULL, strerror(-err));
	}
}

static void bench_step(struct bench *b)
{
	if (b->failed) {
		if (b->done == b->sent)
			bench_finish(b);
		return;
	}
	if (b->phase == 0) {
		bench_send(b);
		return;
	}
	while (b->sent < b->burst && b->sent - b->done < b->inflight)
		bench_send(b);
}

int store_handle_bench(struct store *s, struct ctl_client *client, const struct ctl_request *req,
                       char **ret_error)
{
	json_int_t count = json_integer_value(json_object_get(req->args, "count"));
	json_int_t burst = json_integer_value(json_object_get(req->args, "burst"));
	json_int_t inflight = json_integer_value(json_object_get(req->args, "inflight"));
	if (count < 1 || count > 1000000 || burst < 1 || burst > 10000000 || inflight < 1)
		return error_set(ret_error, -EINVAL,
		                 "store.bench needs count (1-1000000), burst (1-10000000) and "
		                 "inflight (>= 1)");
	if (!store_is_leader(s))
		return error_set(ret_error, -EAGAIN, "store.bench runs on the leader");
	struct bench *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	*b = (struct bench){.s = s,
	                    .count = (unsigned)count,
	                    .burst = (unsigned)burst,
	                    .inflight = (unsigned)inflight};
	b->lat_ns = calloc(b->count, sizeof(uint64_t));
	b->d = ctl_defer(client, req);
	bench_step(b);
	return CTL_DEFERRED;
}
