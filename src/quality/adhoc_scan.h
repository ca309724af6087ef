/*
 * adhoc_scan.h
 *		The direct read of a table for tributary.window_quality and column_quality: its
 *		rows binned into panes and each pane's window state built in one pass, by parallel
 *		workers and the leader together when the table is large enough (adhoc_scan.c).
 */
#ifndef TRIBUTARY_QUALITY_ADHOC_SCAN_H
#define TRIBUTARY_QUALITY_ADHOC_SCAN_H

#include "postgres.h"

#include "access/parallel.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "storage/dsm.h"
#include "storage/shm_toc.h"

#include "quality/window.h"

/* What the function returns for a window: its row (window_quality), or a row per column. */
typedef enum TribAdhocReport
{
	TRIB_ADHOC_REPORT_WINDOWS,	/* a TribAdhocWindowReport */
	TRIB_ADHOC_REPORT_COLUMNS	/* a TribQualityColumnMetrics per watched column */
} TribAdhocReport;

/* window_quality's row for a window. */
typedef struct TribAdhocWindowReport
{
	TribQualityWindowMetrics metrics;
	TimestampTz newest_event;	/* DT_NOBEGIN when none */
} TribAdhocWindowReport;

/*
 * What a direct read reads and how it bins rows. Flat (no pointers), so a parallel
 * worker gets it by copy.
 */
typedef struct TribAdhocScanSpec
{
	Oid			relid;
	AttrNumber	timeatt;
	AttrNumber	keyatt;			/* 0: the whole row is the key */
	int			parts;			/* TRIB_QUALITY_PART_* the caller reads (window.h) */
	TribAdhocReport report;		/* what the caller returns for a window */
	bool		tumbling;		/* the window is one pane (a worker may report it) */
	int64		slide;			/* a pane's length in microseconds */
	Interval	slide_iv;		/* the same, for date_bin before the origin */
	TimestampTz origin;
	bool		has_from;
	bool		has_to;
	TimestampTz from;
	TimestampTz to;
	int			ncols;
	AttrNumber	atts[FLEXIBLE_ARRAY_MEMBER];	/* the watched columns, in order */
} TribAdhocScanSpec;

#define TribAdhocScanSpecSize(ncols) \
	(offsetof(TribAdhocScanSpec, atts) + sizeof(AttrNumber) * Max((ncols), 1))

/*
 * The panes with rows, in time order, each with its window state, or (tumbling windows
 * read in parallel) its report from the worker that had it alone and no state.
 */
typedef struct TribAdhocPanes
{
	int			n;
	TimestampTz *starts;
	TribQualityWindow **states;
	void	  **reports;		/* NULL when there is a state */
} TribAdhocPanes;

/* The size of a pane's report, and the report of a window's state. */
extern Size TribAdhocReportSize(TribAdhocReport report, int ncols);
extern void TribAdhocReportRead(TribAdhocReport report, const TribQualityWindow *w, void *out);

/* date_bin(stride, t, origin), exactly as the query path bins panes. */
extern TimestampTz TribAdhocBin(Interval *stride, TimestampTz t, TimestampTz origin);

/*
 * The start of the pane of t, as date_bin(slide, t, origin) computes it (slide in
 * microseconds, and as an interval): directly for times at or after the origin, by
 * timestamptz_bin itself before it. False when t - origin does not fit in an interval,
 * where date_bin raises "interval out of range" (a time near the end of the timestamp
 * range with an origin far in the past).
 */
static inline bool
TribQualityPaneStart(TimestampTz t, TimestampTz origin, int64 slide, Interval *slide_iv,
					 TimestampTz *start)
{
	int64		since;

	if (pg_sub_s64_overflow(t, origin, &since))
		return false;
	*start = since >= 0 ? t - since % slide : TribAdhocBin(slide_iv, t, origin);
	return true;
}

/*
 * Whether every window of width window (a multiple of slide) that covers the pane starting
 * at pane starts and ends at a timestamp PostgreSQL can represent: the last of them ends
 * at pane + window, which near the end of the range (294276 AD) lies past it, as the first
 * one's start can lie before 4714 BC. start + window in SQL raises "timestamp out of range".
 */
static inline bool
TribQualityWindowsFit(TimestampTz pane, int64 window, int64 slide)
{
	TimestampTz first;
	TimestampTz end;

	return !pg_sub_s64_overflow(pane, window - slide, &first) && IS_VALID_TIMESTAMP(first) &&
		!pg_add_s64_overflow(pane, window, &end) && IS_VALID_TIMESTAMP(end);
}

/*
 * Read spec's table (a plain table or materialized view the caller may read, without
 * row-level security) into panes, whose states are allocated in cxt. Read in parallel,
 * it returns the workers still finishing (and parallel mode on): pass that to
 * TribAdhocScanEnd before returning, after reading the panes.
 */
extern ParallelContext *TribAdhocScan(const TribAdhocScanSpec *spec, TribAdhocPanes *panes,
									  MemoryContext cxt);
extern void TribAdhocScanEnd(ParallelContext *pcxt);

/* A parallel worker's part of TribAdhocScan (found by name in the library). */
extern PGDLLEXPORT void TribAdhocParallelMain(dsm_segment *seg, shm_toc *toc);

#endif							/* TRIBUTARY_QUALITY_ADHOC_SCAN_H */
