/* SPDX-License-Identifier: GPL-2.0 */
/*
 * movgem's trace events, in the manner of i915_trace.h: the migrate
 * hook's decision per folio, shrinker scans, the OOM notifier and the
 * vmap purge, requests, and runtime PM as the driver sees it.  Defined
 * (CREATE_TRACE_POINTS) in rust/shims/trace.c, which also has the thin
 * functions the Rust side calls.  The debugfs counters stay; these add
 * the per-event view for perf and trace-cmd.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM movgem

#if !defined(_MOVGEM_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _MOVGEM_TRACE_H

#include <linux/sched.h>
#include <linux/tracepoint.h>
#include <linux/types.h>

/* The hook's outcomes: MOVGEM_OUTCOME_* in include/movgem_shim.h. */
#define movgem_show_outcome(o)						\
	__print_symbolic(o,						\
		{ 0, "bypassed" },					\
		{ 1, "passthrough" },					\
		{ 2, "in_place" },					\
		{ 3, "released" },					\
		{ 4, "refused" },					\
		{ 5, "failed" })

/* The migration mode: MOVGEM_MIGRATE_* in include/movgem_shim.h. */
#define movgem_show_mode(m)						\
	__print_symbolic(m,						\
		{ 0, "async" },						\
		{ 1, "light" },						\
		{ 2, "sync" })

TRACE_EVENT(movgem_migrate_folio,
	TP_PROTO(u64 obj, unsigned long index, unsigned int nr,
		 unsigned long pfn_from, unsigned long pfn_to, int mode,
		 int outcome, const char *reason, u64 wait_ns, u64 locked_ns),
	TP_ARGS(obj, index, nr, pfn_from, pfn_to, mode, outcome, reason,
		wait_ns, locked_ns),

	TP_STRUCT__entry(
		__field(u64, obj)
		__field(unsigned long, index)
		__field(unsigned int, nr)
		__field(unsigned long, pfn_from)
		__field(unsigned long, pfn_to)
		__field(int, mode)
		__field(int, outcome)
		__string(reason, reason)
		__field(u64, wait_ns)
		__field(u64, locked_ns)
	),

	TP_fast_assign(
		__entry->obj = obj;
		__entry->index = index;
		__entry->nr = nr;
		__entry->pfn_from = pfn_from;
		__entry->pfn_to = pfn_to;
		__entry->mode = mode;
		__entry->outcome = outcome;
		__assign_str(reason);
		__entry->wait_ns = wait_ns;
		__entry->locked_ns = locked_ns;
	),

	TP_printk("obj=%llu index=%lu nr=%u pfn=0x%lx->0x%lx mode=%s outcome=%s reason=%s wait_ns=%llu locked_ns=%llu",
		  __entry->obj, __entry->index, __entry->nr,
		  __entry->pfn_from, __entry->pfn_to,
		  movgem_show_mode(__entry->mode),
		  movgem_show_outcome(__entry->outcome), __get_str(reason),
		  __entry->wait_ns, __entry->locked_ns)
);

TRACE_EVENT(movgem_shrink_scan,
	TP_PROTO(bool kswapd, u64 nr_to_scan, u64 freed, bool contended),
	TP_ARGS(kswapd, nr_to_scan, freed, contended),

	TP_STRUCT__entry(
		__field(bool, kswapd)
		__field(u64, nr_to_scan)
		__field(u64, freed)
		__field(bool, contended)
	),

	TP_fast_assign(
		__entry->kswapd = kswapd;
		__entry->nr_to_scan = nr_to_scan;
		__entry->freed = freed;
		__entry->contended = contended;
	),

	TP_printk("scope=%s nr_to_scan=%llu freed=%llu contended=%d",
		  __entry->kswapd ? "kswapd" : "direct",
		  __entry->nr_to_scan, __entry->freed, __entry->contended)
);

/* Who asked for memory: Reclaimer in rust/shrinker.rs. */
#define movgem_show_reclaimer(r)					\
	__print_symbolic(r,						\
		{ 0, "debugfs" },					\
		{ 1, "direct" },					\
		{ 2, "kswapd" },					\
		{ 3, "oom" },						\
		{ 4, "own" },						\
		{ 5, "slab" })

/*
 * One DONTNEED object purged by a shrink: by whom (and in which task:
 * pid, and whether it was inside reclaim, PF_MEMALLOC), and how many of
 * its pages sat in locked folios at that moment, the locks a truncation
 * in place would have waited for (a migration holds its source folios
 * locked while it allocates the next destination).
 */
TRACE_EVENT(movgem_shrink_purge,
	TP_PROTO(u64 obj, unsigned long pages, unsigned long locked, int who),
	TP_ARGS(obj, pages, locked, who),

	TP_STRUCT__entry(
		__field(u64, obj)
		__field(unsigned long, pages)
		__field(unsigned long, locked)
		__field(int, who)
		__field(pid_t, pid)
		__field(bool, memalloc)
	),

	TP_fast_assign(
		__entry->obj = obj;
		__entry->pages = pages;
		__entry->locked = locked;
		__entry->who = who;
		__entry->pid = current->pid;
		__entry->memalloc = !!(current->flags & PF_MEMALLOC);
	),

	TP_printk("obj=%llu pages=%lu locked=%lu by=%s pid=%d memalloc=%d",
		  __entry->obj, __entry->pages, __entry->locked,
		  movgem_show_reclaimer(__entry->who), __entry->pid,
		  __entry->memalloc)
);

/*
 * debug_reclaim_waits_truncation_ms: reclaim waited for the truncation
 * of an object it purged, as the old in-place purge did; timed_out if
 * the truncation had not run when the wait gave up.
 */
TRACE_EVENT(movgem_purge_wait,
	TP_PROTO(u64 obj, int who, u64 waited_us, bool timed_out),
	TP_ARGS(obj, who, waited_us, timed_out),

	TP_STRUCT__entry(
		__field(u64, obj)
		__field(int, who)
		__field(u64, waited_us)
		__field(bool, timed_out)
		__field(pid_t, pid)
	),

	TP_fast_assign(
		__entry->obj = obj;
		__entry->who = who;
		__entry->waited_us = waited_us;
		__entry->timed_out = timed_out;
		__entry->pid = current->pid;
	),

	TP_printk("obj=%llu by=%s pid=%d waited_us=%llu timed_out=%d",
		  __entry->obj, movgem_show_reclaimer(__entry->who),
		  __entry->pid, __entry->waited_us, __entry->timed_out)
);

DECLARE_EVENT_CLASS(movgem_freed,
	TP_PROTO(u64 freed),
	TP_ARGS(freed),

	TP_STRUCT__entry(
		__field(u64, freed)
	),

	TP_fast_assign(
		__entry->freed = freed;
	),

	TP_printk("freed=%llu", __entry->freed)
);

DEFINE_EVENT(movgem_freed, movgem_oom_notify,
	TP_PROTO(u64 freed),
	TP_ARGS(freed)
);

/* @contended: gave up on struct_mutex (vmap_purge_contended). */
TRACE_EVENT(movgem_vmap_purge,
	TP_PROTO(u64 freed, bool contended),
	TP_ARGS(freed, contended),

	TP_STRUCT__entry(
		__field(u64, freed)
		__field(bool, contended)
	),

	TP_fast_assign(
		__entry->freed = freed;
		__entry->contended = contended;
	),

	TP_printk("freed=%llu contended=%d", __entry->freed,
		  __entry->contended)
);

TRACE_EVENT(movgem_request_submit,
	TP_PROTO(u64 seqno, unsigned int op, unsigned int nobjs, bool hang),
	TP_ARGS(seqno, op, nobjs, hang),

	TP_STRUCT__entry(
		__field(u64, seqno)
		__field(unsigned int, op)
		__field(unsigned int, nobjs)
		__field(bool, hang)
	),

	TP_fast_assign(
		__entry->seqno = seqno;
		__entry->op = op;
		__entry->nobjs = nobjs;
		__entry->hang = hang;
	),

	TP_printk("seqno=%llu op=%u objects=%u hang=%d",
		  __entry->seqno, __entry->op, __entry->nobjs, __entry->hang)
);

/* How a request ended: MOVGEM_RETIRE_* in include/movgem_shim.h. */
TRACE_EVENT(movgem_request_retire,
	TP_PROTO(u64 seqno, int how),
	TP_ARGS(seqno, how),

	TP_STRUCT__entry(
		__field(u64, seqno)
		__field(int, how)
	),

	TP_fast_assign(
		__entry->seqno = seqno;
		__entry->how = how;
	),

	TP_printk("seqno=%llu end=%s", __entry->seqno,
		  __print_symbolic(__entry->how,
				   { 0, "completed" },
				   { 1, "reset" },
				   { 2, "hang_timed_out" }))
);

TRACE_EVENT(movgem_runtime_pm,
	TP_PROTO(bool resumed),
	TP_ARGS(resumed),

	TP_STRUCT__entry(
		__field(bool, resumed)
	),

	TP_fast_assign(
		__entry->resumed = resumed;
	),

	TP_printk("state=%s", __entry->resumed ? "resumed" : "suspended")
);

#endif /* _MOVGEM_TRACE_H */

/* This part must be outside the include guard. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE movgem_trace
#include <trace/define_trace.h>
