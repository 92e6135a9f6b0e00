// SPDX-License-Identifier: GPL-2.0
/*
 * The trace events of rust/shims/movgem_trace.h, defined here, and the
 * functions rust/trace.rs calls to emit them (the tracepoint macros are
 * static inlines the Rust side cannot reach).
 */
#define CREATE_TRACE_POINTS
#include "movgem_trace.h"

#include <linux/mm.h>

#include "movgem_shim.h"

void movgem_trace_migrate_folio(u64 obj, unsigned long index, unsigned int nr,
				unsigned long pfn_from, unsigned long pfn_to,
				int mode, int outcome, const char *reason,
				u64 wait_ns, u64 locked_ns)
{
	trace_movgem_migrate_folio(obj, index, nr, pfn_from, pfn_to, mode,
				   outcome, reason, wait_ns, locked_ns);
}

void movgem_trace_shrink_scan(bool kswapd, u64 nr_to_scan, u64 freed,
			      bool contended)
{
	trace_movgem_shrink_scan(kswapd, nr_to_scan, freed, contended);
}

/*
 * Counts the pages of @pages (@n of them) in locked folios only when the
 * event is on: reclaim pays for the walk only while someone traces it.
 */
void movgem_trace_shrink_purge(u64 obj, struct page **pages, unsigned long n,
			       int who)
{
	unsigned long i, locked = 0;

	if (!trace_movgem_shrink_purge_enabled())
		return;
	for (i = 0; i < n; i++)
		locked += folio_test_locked(page_folio(pages[i]));
	trace_movgem_shrink_purge(obj, n, locked, who);
}

void movgem_trace_purge_wait(u64 obj, int who, u64 waited_us, bool timed_out)
{
	trace_movgem_purge_wait(obj, who, waited_us, timed_out);
}

void movgem_trace_oom_notify(u64 freed)
{
	trace_movgem_oom_notify(freed);
}

void movgem_trace_vmap_purge(u64 freed, bool contended)
{
	trace_movgem_vmap_purge(freed, contended);
}

void movgem_trace_request_submit(u64 seqno, unsigned int op,
				 unsigned int nobjs, bool hang)
{
	trace_movgem_request_submit(seqno, op, nobjs, hang);
}

void movgem_trace_request_retire(u64 seqno, int how)
{
	trace_movgem_request_retire(seqno, how);
}

void movgem_trace_runtime_pm(bool resumed)
{
	trace_movgem_runtime_pm(resumed);
}
