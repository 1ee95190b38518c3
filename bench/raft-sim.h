/* raft-sim: libraft 0.15 instances on simulated time, network and disk, in
 * one thread (raft-sim.c says what is modelled and how). */
#ifndef BENCH_RAFT_SIM_H
#define BENCH_RAFT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>

struct params {
	/* the workload (raft-fanout.c) */
	unsigned voters, standbys, commits, entry_bytes, burst, inflight;
	bool voters_last;
	unsigned election_ms, heartbeat_ms;
	double idle_s;
	uint64_t seed;
	/* the simulated devices */
	double latency_us, link_mbit, disk_us;
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

struct ev;

struct sim {
	struct params p;
	unsigned n;
	struct node *nodes;
	uint64_t now, seq, rng;
	struct ev *heap;
	size_t heap_len, heap_cap;
	int current; /* the instance being run, for the heap accounting; -1: none */
	uint64_t clock_cost_ns;
};

/* The one simulation of this process. */
extern struct sim S;

/* Prints "raft-fanout: WHAT" and exits with status 1. */
void sim_die(const char *what) __attribute__((noreturn));

/* Grows the heap by `bytes`, touched, and keeps it (see raft-sim.c). */
void sim_prefault_heap(size_t bytes);

/* The raft_heap that counts each instance's live bytes (heap_live, heap_peak). */
extern struct raft_heap sim_heap;

/* Measures the cost of reading the clock, taken out of each timed call. */
void sim_calibrate_clock(void);

/* Every call into instance `idx` is bracketed by sim_enter() and
 * sim_leave(): allocations meanwhile are the instance's, and a timed
 * instance's time in the call is added to its counters. */
struct sim_call {
	int prev;
	uint64_t t0;
};
struct sim_call sim_enter(unsigned idx);
void sim_leave(unsigned idx, struct sim_call c);

/* A phase's wall and thread CPU time: sim_phase_descheduled() is the share
 * of the wall time since sim_phase_start() the thread did not run. */
struct sim_phase {
	uint64_t wall0, cpu0;
};
struct sim_phase sim_phase_start(void);
double sim_phase_descheduled(struct sim_phase p);

/* Fills `n->io` with the simulated raft_io; n->idx must be set. */
void sim_io_init(struct node *n);

/* Runs events until cond() holds (checked after each; NULL: never) or the
 * next event is later than `until` (ns). Returns whether cond() holds. */
bool sim_run(bool (*cond)(void), uint64_t until);

#endif
