/*
 * adhoc_scan.c
 *		tributary.window_quality and column_quality's direct read of a table: every row's
 *		pane (date_bin of its time by the slide), and each pane's window state, in one
 *		pass; in parallel when the table is large enough.
 *
 * Serial: one sequential scan with the caller's snapshot. Parallel, as PostgreSQL's
 * parallel index builds do it (nbtsort.c): the leader enters parallel mode, puts the scan's
 * spec and its snapshot into a dynamic shared memory segment, launches workers
 * (TribAdhocParallelMain in this library), and reads too unless
 * parallel_leader_participation is off. The number of workers is the planner's for a
 * parallel scan of the table (compute_parallel_worker: min_parallel_table_scan_size, the
 * table's parallel_workers, max_parallel_workers_per_gather); none launched, the read is
 * serial.
 *
 * Participants claim ranges of blocks (TID range scans) from a counter under a spinlock,
 * large ranges first and smaller ones towards the end, so they finish together and, in a
 * table written in time order, few panes are split between participants. Each builds its
 * own panes, and notes the times each of its ranges held. A worker sends to the leader,
 * through its own shm_mq, its panes and at the end how many it sent; the leader merges
 * them into its own by pane start. Window states are functions of the multiset of their
 * rows and merge exactly, so the panes are those of the serial read, to the last bit,
 * whoever read which rows.
 *
 * Tumbling windows (a pane is a window): once every range is read, a worker knows which of
 * its panes no other participant can have had a row of (no range of another participant
 * held a time in the pane), and for those sends the pane's report (the row or rows the
 * function returns for it, TribAdhocReportRead), computed in the worker; only the panes
 * split between participants go as states (window.h's stored form) to be merged. So the
 * leader reads its share of the table and reports its share of the windows, instead of
 * taking in every worker's pane. Hopping windows need every pane's state: a worker sends
 * its panes after each range whose rows came in time order (few changes of pane), and the
 * leader merges what has arrived between its own rows, so the merging goes on while the
 * table is read (a pane sent twice is merged twice: right, only slower).
 *
 * A worker's error reaches the leader as parallel query's errors do (the leader's
 * CHECK_FOR_INTERRUPTS re-raises it), and aborting the leader's transaction stops the
 * workers.
 *
 * Locks: AccessShareLock on the table in every participant (the workers' are in the
 * leader's lock group); the claim counter's spinlock for a few instructions; workers of
 * tumbling windows wait on a condition variable until every range is read.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "common/int.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/pathnodes.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/paths.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/condition_variable.h"
#include "storage/predicate.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "quality/adhoc_scan.h"

/* the library and entry point a parallel worker runs (see CreateParallelContext) */
#define TRIB_ADHOC_LIBRARY "tributary"
#define TRIB_ADHOC_WORKER_MAIN "TribAdhocParallelMain"

/* shm_toc keys of the parallel read's segment */
#define TRIB_ADHOC_KEY_SHARED	UINT64CONST(0x7B1B000000000001)
#define TRIB_ADHOC_KEY_SPEC		UINT64CONST(0x7B1B000000000002)
#define TRIB_ADHOC_KEY_SNAPSHOT UINT64CONST(0x7B1B000000000003)
#define TRIB_ADHOC_KEY_QUEUES	UINT64CONST(0x7B1B000000000004)

/* each worker's queue to the leader */
#define TRIB_ADHOC_QUEUE_SIZE	((Size) 1024 * 1024)
/* the leader takes what the workers sent every so many of its own rows */
#define TRIB_ADHOC_DRAIN_ROWS	4096
/* a range's rows are in time order when they change pane at most once in this many */
#define TRIB_ADHOC_ORDERED_ROWS 8
/*
 * A claim is the unclaimed blocks / (participants * this), and at least the minimum,
 * which grows for very large tables so that there are at most TRIB_ADHOC_MAX_RANGES.
 */
#define TRIB_ADHOC_CLAIMS_PER_SHARE 4
#define TRIB_ADHOC_MIN_CLAIM	16
#define TRIB_ADHOC_MAX_RANGES	65536

/* a worker's messages: a pane's state, a pane's report, the number of panes sent */
#define TRIB_ADHOC_MSG_STATE	'S'
#define TRIB_ADHOC_MSG_REPORT	'R'
#define TRIB_ADHOC_MSG_END		'E'
#define TRIB_ADHOC_MSG_HEADER	(1 + sizeof(TimestampTz))

/* The times of the rows a range held (min > max: none), and who read it. */
typedef struct TribAdhocRange
{
	int			participant;	/* ParallelWorkerNumber; -1 the leader */
	TimestampTz min;
	TimestampTz max;
} TribAdhocRange;

/* What the participants share: the blocks still to claim, and the ranges read. */
typedef struct TribAdhocShared
{
	slock_t		mutex;
	BlockNumber nblocks;		/* the table's blocks when the read began */
	BlockNumber next;			/* the first block nobody claimed yet */
	BlockNumber min_claim;
	int			nparticipants;	/* for the claims' sizes */
	int			max_ranges;		/* room in ranges[] */
	int			nranges;		/* ranges claimed */
	int			ranges_read;
	ConditionVariable all_read; /* every block claimed, every range read */
	TribAdhocRange ranges[FLEXIBLE_ARRAY_MEMBER];	/* by claim */
} TribAdhocShared;

/* A pane in a participant's hash table keyed by its start: its state, or its report. */
typedef struct TribAdhocPaneEntry
{
	TimestampTz start;
	TribQualityWindow *window;
	void	   *report;			/* from a worker that had the pane alone (window NULL) */
} TribAdhocPaneEntry;

/* The leader's ends of the workers' queues, while they run. */
typedef struct TribAdhocQueues
{
	int			n;				/* workers launched */
	shm_mq_handle **mqh;
	bool	   *done;			/* its last message came, or its queue closed */
	bool	   *complete;		/* ... and that message counted the panes received */
	uint64	   *received;		/* panes received from it */
	MemoryContext scratch;		/* a pane being merged */
} TribAdhocQueues;

/* One participant's read: how to read a row, and the panes so far. */
typedef struct TribAdhocScanner
{
	const TribAdhocScanSpec *spec;
	MemoryContext cxt;
	int			lastatt;		/* the last attribute a row's reading needs */
	bool	   *numeric;		/* by watched column */
	TribQualityColumnReader *readers;	/* by watched column */
	TribQualityColumnReader key;	/* when spec->keyatt > 0 */
	TribQualityRowHasher rowhasher; /* when the whole row is the key */
	uint64	   *hashes;			/* each attribute's hash in the row being read */
	MemoryContext panecxt;		/* the panes and their table */
	HTAB	   *panes;
	TribAdhocPaneEntry *last;	/* the pane of the previous row */
	uint64		nrows;
	uint64		lookups;		/* rows in another pane than the previous row's */
	TimestampTz range_min;		/* the times of the range being read */
	TimestampTz range_max;
	int			participant;	/* ParallelWorkerNumber; -1 the leader */
	shm_mq_handle *mqh;			/* a worker's queue to the leader */
	uint64		sent;			/* panes a worker sent */
	TribAdhocQueues *queues;	/* the leader's, while workers run */
} TribAdhocScanner;

/* date_bin(stride, t, origin), exactly as the query's panes are binned. */
TimestampTz
TribAdhocBin(Interval *stride, TimestampTz t, TimestampTz origin)
{
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_bin, IntervalPGetDatum(stride),
												   TimestampTzGetDatum(t),
												   TimestampTzGetDatum(origin)));
}

/* The size of one pane's report. */
Size
TribAdhocReportSize(TribAdhocReport report, int ncols)
{
	if (report == TRIB_ADHOC_REPORT_WINDOWS)
		return sizeof(TribAdhocWindowReport);
	return sizeof(TribQualityColumnMetrics) * Max(ncols, 1);
}

/* What the function returns for a window, from its state (the one place it is read). */
void
TribAdhocReportRead(TribAdhocReport report, const TribQualityWindow *w, void *out)
{
	if (report == TRIB_ADHOC_REPORT_WINDOWS)
	{
		TribAdhocWindowReport *r = (TribAdhocWindowReport *) out;

		TribQualityWindowRead(w, TribQualityDefaultWeights, &r->metrics);
		r->newest_event = w->newest_event;
		return;
	}
	for (int c = 0; c < w->ncols; c++)
		TribQualityColumnRead(w, c, &((TribQualityColumnMetrics *) out)[c], true);
}

/* No panes: a new table, the memory of the panes before it freed. */
static void
TribAdhocScannerEmpty(TribAdhocScanner *s)
{
	HASHCTL		ctl = {0};

	MemoryContextReset(s->panecxt);
	ctl.keysize = sizeof(TimestampTz);
	ctl.entrysize = sizeof(TribAdhocPaneEntry);
	ctl.hcxt = s->panecxt;
	s->panes = hash_create("tributary quality panes", 1024, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	s->last = NULL;
}

/* Readers for the spec's columns of rel, and an empty table of panes, in cxt. */
static void
TribAdhocScannerInit(TribAdhocScanner *s, const TribAdhocScanSpec *spec, Relation rel,
					 MemoryContext cxt)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	memset(s, 0, sizeof(*s));
	s->spec = spec;
	s->cxt = cxt;
	s->lastatt = spec->timeatt;
	s->numeric = palloc(sizeof(bool) * Max(spec->ncols, 1));
	s->readers = palloc0(sizeof(TribQualityColumnReader) * Max(spec->ncols, 1));
	for (int c = 0; c < spec->ncols; c++)
	{
		Oid			typid = TupleDescAttr(desc, spec->atts[c] - 1)->atttypid;

		TribQualityColumnReaderInit(&s->readers[c], typid, get_typcollation(typid), cxt);
		s->numeric[c] = s->readers[c].numeric;
		s->lastatt = Max(s->lastatt, spec->atts[c]);
	}
	if ((spec->parts & TRIB_QUALITY_PART_KEYS) && spec->keyatt > 0)
	{
		Oid			typid = TupleDescAttr(desc, spec->keyatt - 1)->atttypid;

		TribQualityColumnReaderInit(&s->key, typid, get_typcollation(typid), cxt);
		s->lastatt = Max(s->lastatt, spec->keyatt);
	}
	else if (spec->parts & TRIB_QUALITY_PART_KEYS)
	{
		TribQualityRowHasherInit(&s->rowhasher, desc, cxt);
		s->hashes = palloc(sizeof(uint64) * Max(desc->natts, 1));
		s->lastatt = desc->natts;
	}
	s->participant = -1;
	s->panecxt = AllocSetContextCreate(cxt, "tributary quality panes", ALLOCSET_DEFAULT_SIZES);
	TribAdhocScannerEmpty(s);
	MemoryContextSwitchTo(old);
}

/*
 * The window of the pane that holds t: the previous row's most of the time (rows come
 * roughly in time order). A pane's start is date_bin's (TribQualityPaneStart); where
 * date_bin fails, so does this, with its error, as the query path would.
 */
static inline TribQualityWindow *
TribAdhocPane(TribAdhocScanner *s, TimestampTz t)
{
	const TribAdhocScanSpec *spec = s->spec;
	TimestampTz start;
	bool		found;

	if (s->last != NULL && t >= s->last->start && t - s->last->start < spec->slide)
		return s->last->window;
	s->lookups++;
	if (!TribQualityPaneStart(t, spec->origin, spec->slide, (Interval *) &spec->slide_iv, &start))
		start = TribAdhocBin((Interval *) &spec->slide_iv, t, spec->origin);	/* its error */
	s->last = hash_search(s->panes, &start, HASH_ENTER, &found);
	if (!found)
	{
		s->last->window = TribQualityWindowCreate(spec->ncols, s->numeric, false, s->panecxt);
		s->last->report = NULL;
	}
	return s->last->window;
}

/* One row into its pane: the parts the caller reads, nothing else. */
static inline void
TribAdhocScanRow(TribAdhocScanner *s, TupleTableSlot *slot)
{
	const TribAdhocScanSpec *spec = s->spec;
	Datum	   *values;
	bool	   *isnull;
	TimestampTz t;
	TribQualityWindow *w;
	uint64	   *hashes = NULL;

	if ((++s->nrows & 1023) == 0)
		CHECK_FOR_INTERRUPTS();
	slot_getsomeattrs(slot, s->lastatt);
	values = slot->tts_values;
	isnull = slot->tts_isnull;
	if (isnull[spec->timeatt - 1])
		return;
	/* a timestamp read as UTC has the same microseconds as a timestamptz */
	t = DatumGetTimestampTz(values[spec->timeatt - 1]);
	if (TIMESTAMP_NOT_FINITE(t) || (spec->has_from && t < spec->from) ||
		(spec->has_to && t >= spec->to))
		return;
	s->range_min = Min(s->range_min, t);
	s->range_max = Max(s->range_max, t);
	w = TribAdhocPane(s, t);
	TribQualityWindowAddEvent(w, t);
	if (!(spec->parts & TRIB_QUALITY_PART_KEYS))
		TribQualityWindowCountRow(w);
	else if (spec->keyatt > 0)
	{
		if (isnull[spec->keyatt - 1])
			TribQualityWindowAddNullKeyRow(w);
		else
			TribQualityWindowAddRow(w, TribHashDatum(&s->key.hasher, values[spec->keyatt - 1]));
	}
	else
	{
		/* every column's hash is made once, for the row's and for the columns' */
		TribQualityWindowAddRow(w, TribQualityHashTupleKeep(&s->rowhasher, values, isnull,
															s->hashes));
		hashes = s->hashes;
	}
	for (int c = 0; c < spec->ncols; c++)
	{
		int			a = spec->atts[c] - 1;
		uint64		hash = 0;

		if (isnull[a])
			continue;
		if (spec->parts & TRIB_QUALITY_PART_DISTINCT)
			hash = hashes != NULL ? hashes[a] : TribHashDatum(&s->readers[c].hasher, values[a]);
		TribQualityWindowAddValueParts(w, &s->readers[c], c, values[a], hash, spec->parts);
	}
}

/* Order of panes by start. */
static int
TribAdhocCompareStarts(const void *a, const void *b)
{
	TimestampTz x = ((const TribAdhocPaneEntry *) a)->start;
	TimestampTz y = ((const TribAdhocPaneEntry *) b)->start;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* The scanner's panes in time order, for the walk over windows. */
static void
TribAdhocScannerPanes(TribAdhocScanner *s, TribAdhocPanes *panes)
{
	HASH_SEQ_STATUS seq;
	TribAdhocPaneEntry *e;
	TribAdhocPaneEntry *sorted;
	int			i = 0;

	panes->n = (int) hash_get_num_entries(s->panes);
	sorted = MemoryContextAlloc(s->cxt, sizeof(TribAdhocPaneEntry) * Max(panes->n, 1));
	hash_seq_init(&seq, s->panes);
	while ((e = hash_seq_search(&seq)) != NULL)
		sorted[i++] = *e;
	qsort(sorted, panes->n, sizeof(TribAdhocPaneEntry), TribAdhocCompareStarts);
	panes->starts = MemoryContextAlloc(s->cxt, sizeof(TimestampTz) * Max(panes->n, 1));
	panes->states = MemoryContextAlloc(s->cxt, sizeof(TribQualityWindow *) * Max(panes->n, 1));
	panes->reports = MemoryContextAlloc(s->cxt, sizeof(void *) * Max(panes->n, 1));
	for (int p = 0; p < panes->n; p++)
	{
		panes->starts[p] = sorted[p].start;
		panes->states[p] = sorted[p].window;
		panes->reports[p] = sorted[p].report;
	}
	pfree(sorted);
}

/*
 * The next range of blocks to read, [*start, *start + *count), and its number in the
 * ranges; false when none is left. Large ranges first, then smaller ones, so the
 * participants finish close together.
 */
static bool
TribAdhocClaim(TribAdhocShared *shared, BlockNumber *start, BlockNumber *count, int *range)
{
	BlockNumber n;

	SpinLockAcquire(&shared->mutex);
	n = (shared->nblocks - shared->next) /
		(BlockNumber) (shared->nparticipants * TRIB_ADHOC_CLAIMS_PER_SHARE);
	n = Min(Max(n, shared->min_claim), shared->nblocks - shared->next);
	/* the last range there is room to note takes what is left (min_claim makes it rare) */
	if (shared->nranges == shared->max_ranges - 1)
		n = shared->nblocks - shared->next;
	*start = shared->next;
	shared->next += n;
	*range = n > 0 ? shared->nranges++ : -1;
	SpinLockRelease(&shared->mutex);
	*count = n;
	return n > 0;
}

/* Whether every block was claimed and every range read (so the ranges are final). */
static bool
TribAdhocAllRead(TribAdhocShared *shared)
{
	bool		all;

	SpinLockAcquire(&shared->mutex);
	all = shared->next >= shared->nblocks && shared->ranges_read == shared->nranges;
	SpinLockRelease(&shared->mutex);
	return all;
}

/* A range read: its times noted for the others, and whoever waits for the last woken. */
static void
TribAdhocRangeRead(TribAdhocScanner *s, TribAdhocShared *shared, int range)
{
	bool		all;

	shared->ranges[range].participant = s->participant;
	shared->ranges[range].min = s->range_min;
	shared->ranges[range].max = s->range_max;
	SpinLockAcquire(&shared->mutex);
	shared->ranges_read++;
	all = shared->next >= shared->nblocks && shared->ranges_read == shared->nranges;
	SpinLockRelease(&shared->mutex);
	if (all)
		ConditionVariableBroadcast(&shared->all_read);
}

static void TribAdhocDrain(TribAdhocScanner *s, bool wait);
static bool TribAdhocSendPanes(TribAdhocScanner *s, TribAdhocShared *shared);

/*
 * Read ranges of blocks until none is left, each a TID range scan with the read's
 * snapshot (and a bulk-read ring for large tables, as a sequential scan has). A worker
 * sends its panes after a range whose rows came in time order; the leader merges what
 * the workers sent as it goes.
 */
static void
TribAdhocScanClaims(TribAdhocScanner *s, Relation rel, Snapshot snapshot,
					TribAdhocShared *shared)
{
	TableScanDesc scan = NULL;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	BlockNumber start;
	BlockNumber count;
	int			range;

	while (TribAdhocClaim(shared, &start, &count, &range))
	{
		ItemPointerData mintid;
		ItemPointerData maxtid;
		uint64		first = s->nrows;

		ItemPointerSet(&mintid, start, FirstOffsetNumber);
		ItemPointerSet(&maxtid, start + count - 1, MaxOffsetNumber);
		if (scan == NULL)
		{
			/* table_beginscan_tidrange, with SO_ALLOW_STRAT */
			scan = rel->rd_tableam->scan_begin(rel, snapshot, 0, NULL, NULL,
											   SO_TYPE_TIDRANGESCAN | SO_ALLOW_PAGEMODE |
											   SO_ALLOW_STRAT);
			rel->rd_tableam->scan_set_tidrange(scan, &mintid, &maxtid);
		}
		else
			table_rescan_tidrange(scan, &mintid, &maxtid);
		s->lookups = 0;
		s->range_min = DT_NOEND;
		s->range_max = DT_NOBEGIN;
		while (table_scan_getnextslot_tidrange(scan, ForwardScanDirection, slot))
		{
			TribAdhocScanRow(s, slot);
			if (s->queues != NULL && s->nrows % TRIB_ADHOC_DRAIN_ROWS == 0)
				TribAdhocDrain(s, false);
		}
		TribAdhocRangeRead(s, shared, range);
		/* hopping windows: the panes of a range in time order go now (see file header) */
		if (s->mqh != NULL && !s->spec->tumbling &&
			s->lookups * TRIB_ADHOC_ORDERED_ROWS <= s->nrows - first &&
			!TribAdhocSendPanes(s, NULL))
			break;
	}
	if (scan != NULL)
		table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
}

/* The serial read: one sequential scan. */
static void
TribAdhocScanSerial(TribAdhocScanner *s, Relation rel, Snapshot snapshot)
{
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		TribAdhocScanRow(s, slot);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
}

/* Send one message to the leader; false when the leader is gone. */
static bool
TribAdhocSend(shm_mq_handle *mqh, shm_mq_iovec *iov, int iovcnt)
{
	return shm_mq_sendv(mqh, iov, iovcnt, false, false) == SHM_MQ_SUCCESS;
}

/* The other participants' ranges, for a worker to tell the panes it had alone. */
typedef struct TribAdhocOthers
{
	int			n;
	TimestampTz *min;			/* ascending */
	TimestampTz *max_so_far;	/* the largest max of the ranges up to this one */
} TribAdhocOthers;

/* Order of ranges by their first time. */
static int
TribAdhocCompareRanges(const void *a, const void *b)
{
	TimestampTz x = ((const TribAdhocRange *) a)->min;
	TimestampTz y = ((const TribAdhocRange *) b)->min;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* The ranges read by participants other than me that held rows, in order of time. */
static void
TribAdhocOthersInit(TribAdhocOthers *o, TribAdhocShared *shared, int me)
{
	TribAdhocRange *ranges = palloc(sizeof(TribAdhocRange) * Max(shared->nranges, 1));

	o->n = 0;
	for (int k = 0; k < shared->nranges; k++)
		if (shared->ranges[k].participant != me && shared->ranges[k].min <= shared->ranges[k].max)
			ranges[o->n++] = shared->ranges[k];
	qsort(ranges, o->n, sizeof(TribAdhocRange), TribAdhocCompareRanges);
	o->min = palloc(sizeof(TimestampTz) * Max(o->n, 1));
	o->max_so_far = palloc(sizeof(TimestampTz) * Max(o->n, 1));
	for (int k = 0; k < o->n; k++)
	{
		o->min[k] = ranges[k].min;
		o->max_so_far[k] = k == 0 ? ranges[k].max : Max(o->max_so_far[k - 1], ranges[k].max);
	}
	pfree(ranges);
}

/*
 * Whether no other participant read a row with a time in [start, end): no range of theirs
 * that starts before end reaches start.
 */
static bool
TribAdhocAlone(const TribAdhocOthers *o, TimestampTz start, TimestampTz end)
{
	int			lo = 0;
	int			hi = o->n;

	/* the ranges whose first time is before end: the first lo of them */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (o->min[mid] < end)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 || o->max_so_far[lo - 1] < start;
}

/*
 * A worker's panes so far to the leader: each a tag, its start, and its window's stored
 * form or (with others: once every range is read, tumbling windows) its report when no
 * other participant had rows in it; then none. False when the leader is gone.
 */
static bool
TribAdhocSendPanes(TribAdhocScanner *s, TribAdhocShared *shared)
{
	MemoryContext scratch = AllocSetContextCreate(s->cxt, "tributary quality pane",
												  ALLOCSET_DEFAULT_SIZES);
	const TribAdhocScanSpec *spec = s->spec;
	Size		report_size = TribAdhocReportSize(spec->report, spec->ncols);
	char	   *report = palloc(report_size);
	TribAdhocOthers others;
	HASH_SEQ_STATUS seq;
	TribAdhocPaneEntry *e;
	bool		sent = true;

	if (shared != NULL)
		TribAdhocOthersInit(&others, shared, s->participant);
	hash_seq_init(&seq, s->panes);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(scratch);
		TimestampTz end;
		char		tag;
		shm_mq_iovec iov[3];

		if (pg_add_s64_overflow(e->start, spec->slide, &end))
			end = PG_INT64_MAX;
		iov[0].data = &tag;
		iov[0].len = 1;
		iov[1].data = (const char *) &e->start;
		iov[1].len = sizeof(TimestampTz);
		if (shared != NULL && TribAdhocAlone(&others, e->start, end))
		{
			tag = TRIB_ADHOC_MSG_REPORT;
			TribAdhocReportRead(spec->report, e->window, report);
			iov[2].data = report;
			iov[2].len = report_size;
		}
		else
		{
			bytea	   *state = TribQualityWindowSerialize(e->window);

			tag = TRIB_ADHOC_MSG_STATE;
			iov[2].data = VARDATA(state);
			iov[2].len = VARSIZE(state) - VARHDRSZ;
		}
		MemoryContextSwitchTo(old);
		if (!TribAdhocSend(s->mqh, iov, 3))
		{
			hash_seq_term(&seq);
			sent = false;
			break;
		}
		MemoryContextReset(scratch);
		s->sent++;
	}
	MemoryContextDelete(scratch);
	pfree(report);
	TribAdhocScannerEmpty(s);
	return sent;
}

/* A worker's last message: how many panes it sent. */
static void
TribAdhocSendEnd(TribAdhocScanner *s)
{
	char		tag = TRIB_ADHOC_MSG_END;
	TimestampTz none = 0;
	shm_mq_iovec iov[3];

	iov[0].data = &tag;
	iov[0].len = 1;
	iov[1].data = (const char *) &none;
	iov[1].len = sizeof(TimestampTz);
	iov[2].data = (const char *) &s->sent;
	iov[2].len = sizeof(uint64);
	(void) TribAdhocSend(s->mqh, iov, 3);
}

/* A worker that waits for the last range to be read, so that the ranges are final. */
static void
TribAdhocWaitAllRead(TribAdhocShared *shared)
{
	ConditionVariablePrepareToSleep(&shared->all_read);
	while (!TribAdhocAllRead(shared))
		ConditionVariableSleep(&shared->all_read, PG_WAIT_EXTENSION);
	ConditionVariableCancelSleep();
}

/*
 * A pane from a worker into the leader's: a state adopted when new, else merged; a report
 * kept (nobody else can have that pane).
 */
static void
TribAdhocMergePane(TribAdhocScanner *s, char tag, TimestampTz start, const char *data,
				   Size len, MemoryContext scratch)
{
	TribAdhocPaneEntry *e;
	bool		found;

	e = hash_search(s->panes, &start, HASH_ENTER, &found);
	if (found && (e->report != NULL || tag == TRIB_ADHOC_MSG_REPORT))
		elog(ERROR, "a pane of the parallel quality read came both as a report and otherwise");
	if (tag == TRIB_ADHOC_MSG_REPORT)
	{
		if (len != TribAdhocReportSize(s->spec->report, s->spec->ncols))
			elog(ERROR, "a parallel quality worker sent a report of %zu bytes", len);
		e->window = NULL;
		e->report = MemoryContextAlloc(s->panecxt, len);
		memcpy(e->report, data, len);
		return;
	}
	if (!found)
	{
		e->window = TribQualityWindowDeserialize(data, len, s->panecxt);
		e->report = NULL;
		return;
	}
	TribQualityWindowMerge(e->window, TribQualityWindowDeserialize(data, len, scratch));
	MemoryContextReset(scratch);
}

/*
 * Merge what the workers sent into the leader's panes: what has arrived, or (wait) all of
 * it, to each worker's last message.
 */
static void
TribAdhocDrain(TribAdhocScanner *s, bool wait)
{
	TribAdhocQueues *q = s->queues;

	for (int i = 0; i < q->n; i++)
	{
		while (!q->done[i])
		{
			Size		len;
			void	   *data;
			const char *msg;
			TimestampTz start;
			shm_mq_result res = shm_mq_receive(q->mqh[i], &len, &data, !wait);

			if (res == SHM_MQ_WOULD_BLOCK)
				break;
			if (res != SHM_MQ_SUCCESS)
			{
				/* gone without its last message: its error, if any, comes with the wait */
				q->done[i] = true;
				break;
			}
			msg = (const char *) data;
			if (len < TRIB_ADHOC_MSG_HEADER)
				elog(ERROR, "a parallel quality worker sent a message of %zu bytes", len);
			if (msg[0] == TRIB_ADHOC_MSG_END && len == TRIB_ADHOC_MSG_HEADER + sizeof(uint64))
			{
				uint64		sent;

				memcpy(&sent, msg + TRIB_ADHOC_MSG_HEADER, sizeof(uint64));
				q->done[i] = true;
				q->complete[i] = sent == q->received[i];
				break;
			}
			if (msg[0] != TRIB_ADHOC_MSG_STATE && msg[0] != TRIB_ADHOC_MSG_REPORT)
				elog(ERROR, "a parallel quality worker sent a message of kind %d", msg[0]);
			memcpy(&start, msg + 1, sizeof(TimestampTz));
			TribAdhocMergePane(s, msg[0], start, msg + TRIB_ADHOC_MSG_HEADER,
							   len - TRIB_ADHOC_MSG_HEADER, q->scratch);
			q->received[i]++;
		}
	}
}

/*
 * How many workers to read rel with: the planner's number for a parallel scan of it
 * (compute_parallel_worker), or none when the read cannot be parallel.
 */
static int
TribAdhocWorkers(Relation rel, BlockNumber nblocks)
{
	RelOptInfo *info;

	if (max_parallel_workers_per_gather <= 0 || IsInParallelMode() || !IsUnderPostmaster ||
		RelationUsesLocalBuffers(rel) || rel->rd_tableam->scan_set_tidrange == NULL)
		return 0;
	info = makeNode(RelOptInfo);
	info->reloptkind = RELOPT_BASEREL;
	info->rel_parallel_workers = RelationGetParallelWorkers(rel, -1);
	return compute_parallel_worker(info, (double) nblocks, -1, max_parallel_workers_per_gather);
}

/*
 * The parallel read (see the file header) into the leader's scanner, and its workers
 * still finishing; NULL when no worker could be launched (nothing was read then).
 */
static ParallelContext *
TribAdhocScanParallel(TribAdhocScanner *s, Relation rel, Snapshot snapshot, int nworkers,
					  BlockNumber nblocks)
{
	const TribAdhocScanSpec *spec = s->spec;
	ParallelContext *pcxt;
	TribAdhocShared *shared;
	char	   *queues_space;
	TribAdhocQueues queues;
	Size		specsize = TribAdhocScanSpecSize(spec->ncols);
	BlockNumber min_claim = Max(TRIB_ADHOC_MIN_CLAIM, nblocks / TRIB_ADHOC_MAX_RANGES + 1);
	int			max_ranges = (int) (nblocks / min_claim) + 2;
	Size		sharedsize = add_size(offsetof(TribAdhocShared, ranges),
									  mul_size(sizeof(TribAdhocRange), max_ranges));
	Size		snapsize = EstimateSnapshotSpace(snapshot);
	int			launched;

	EnterParallelMode();
	pcxt = CreateParallelContext(TRIB_ADHOC_LIBRARY, TRIB_ADHOC_WORKER_MAIN, nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator, sharedsize);
	shm_toc_estimate_chunk(&pcxt->estimator, specsize);
	shm_toc_estimate_chunk(&pcxt->estimator, snapsize);
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(TRIB_ADHOC_QUEUE_SIZE, nworkers));
	shm_toc_estimate_keys(&pcxt->estimator, 4);
	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
	{
		/* no dynamic shared memory segment to be had */
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return NULL;
	}

	shared = shm_toc_allocate(pcxt->toc, sharedsize);
	SpinLockInit(&shared->mutex);
	shared->nblocks = nblocks;
	shared->next = 0;
	shared->min_claim = min_claim;
	shared->nparticipants = nworkers + (parallel_leader_participation ? 1 : 0);
	shared->max_ranges = max_ranges;
	shared->nranges = 0;
	shared->ranges_read = 0;
	ConditionVariableInit(&shared->all_read);
	shm_toc_insert(pcxt->toc, TRIB_ADHOC_KEY_SHARED, shared);
	shm_toc_insert(pcxt->toc, TRIB_ADHOC_KEY_SPEC,
				   memcpy(shm_toc_allocate(pcxt->toc, specsize), spec, specsize));
	{
		char	   *snapspace = shm_toc_allocate(pcxt->toc, snapsize);

		SerializeSnapshot(snapshot, snapspace);
		shm_toc_insert(pcxt->toc, TRIB_ADHOC_KEY_SNAPSHOT, snapspace);
	}
	queues_space = shm_toc_allocate(pcxt->toc, mul_size(TRIB_ADHOC_QUEUE_SIZE, nworkers));
	for (int i = 0; i < nworkers; i++)
		shm_mq_set_receiver(shm_mq_create(queues_space + i * TRIB_ADHOC_QUEUE_SIZE,
										  TRIB_ADHOC_QUEUE_SIZE), MyProc);
	shm_toc_insert(pcxt->toc, TRIB_ADHOC_KEY_QUEUES, queues_space);

	LaunchParallelWorkers(pcxt);
	launched = pcxt->nworkers_launched;
	if (launched == 0)
	{
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return NULL;
	}
	ereport(DEBUG1,
			(errmsg_internal("tributary: reading \"%s\" in parallel", RelationGetRelationName(rel)),
			 errdetail_internal("%d of %d workers launched.", launched, nworkers)));
	queues.n = launched;
	queues.mqh = palloc(sizeof(shm_mq_handle *) * launched);
	queues.done = palloc0(sizeof(bool) * launched);
	queues.complete = palloc0(sizeof(bool) * launched);
	queues.received = palloc0(sizeof(uint64) * launched);
	queues.scratch = AllocSetContextCreate(s->cxt, "tributary quality pane", ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < launched; i++)
		queues.mqh[i] = shm_mq_attach((shm_mq *) (queues_space + i * TRIB_ADHOC_QUEUE_SIZE),
									  pcxt->seg, pcxt->worker[i].bgwhandle);
	s->queues = &queues;

	if (parallel_leader_participation)
		TribAdhocScanClaims(s, rel, snapshot, shared);
	TribAdhocDrain(s, true);
	s->queues = NULL;
	MemoryContextDelete(queues.scratch);
	for (int i = 0; i < launched; i++)
		if (!queues.complete[i])
		{
			/* raises the worker's error, if it failed with one */
			WaitForParallelWorkersToFinish(pcxt);
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("a parallel worker of tributary's quality read ended without its results"),
					 errhint("See the server log for what ended it.")));
		}
	/* every pane is in: the workers finish while the leader reports (TribAdhocScanEnd) */
	return pcxt;
}

/*
 * The panes of spec's table: read in parallel when the planner would read it in
 * parallel, else (or when no worker starts) in one serial scan. With workers, returns
 * them finishing: the caller passes that to TribAdhocScanEnd once it has reported.
 */
ParallelContext *
TribAdhocScan(const TribAdhocScanSpec *spec, TribAdhocPanes *panes, MemoryContext cxt)
{
	Relation	rel = table_open(spec->relid, AccessShareLock);
	Snapshot	snapshot = RegisterSnapshot(GetActiveSnapshot());
	TribAdhocScanner scanner;
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	int			nworkers = TribAdhocWorkers(rel, nblocks);
	ParallelContext *pcxt = NULL;

	TribAdhocScannerInit(&scanner, spec, rel, cxt);
	/* what a sequential scan locks for serializable transactions */
	PredicateLockRelation(rel, snapshot);
	if (nworkers > 0)
		pcxt = TribAdhocScanParallel(&scanner, rel, snapshot, nworkers, nblocks);
	if (pcxt == NULL)
		TribAdhocScanSerial(&scanner, rel, snapshot);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	TribAdhocScannerPanes(&scanner, panes);
	return pcxt;
}

/*
 * The end of a parallel read (pcxt from TribAdhocScan, or NULL): wait for the workers to
 * finish, which raises a worker's late error, and leave parallel mode.
 */
void
TribAdhocScanEnd(ParallelContext *pcxt)
{
	if (pcxt == NULL)
		return;
	WaitForParallelWorkersToFinish(pcxt);
	DestroyParallelContext(pcxt);
	ExitParallelMode();
}

/*
 * A parallel worker: claim and read ranges of blocks with the leader's snapshot, then send
 * the panes built.
 */
void
TribAdhocParallelMain(dsm_segment *seg, shm_toc *toc)
{
	TribAdhocShared *shared = shm_toc_lookup(toc, TRIB_ADHOC_KEY_SHARED, false);
	TribAdhocScanSpec *spec = shm_toc_lookup(toc, TRIB_ADHOC_KEY_SPEC, false);
	char	   *queues = shm_toc_lookup(toc, TRIB_ADHOC_KEY_QUEUES, false);
	shm_mq	   *mq = (shm_mq *) (queues + ParallelWorkerNumber * TRIB_ADHOC_QUEUE_SIZE);
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary quality worker",
											  ALLOCSET_DEFAULT_SIZES);
	shm_mq_handle *mqh;
	Snapshot	snapshot;
	Relation	rel;
	TribAdhocScanner scanner;

	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	snapshot = RegisterSnapshot(RestoreSnapshot(shm_toc_lookup(toc, TRIB_ADHOC_KEY_SNAPSHOT,
															   false)));
	rel = table_open(spec->relid, AccessShareLock);
	TribAdhocScannerInit(&scanner, spec, rel, cxt);
	scanner.mqh = mqh;
	scanner.participant = ParallelWorkerNumber;
	TribAdhocScanClaims(&scanner, rel, snapshot, shared);
	if (spec->tumbling)
		TribAdhocWaitAllRead(shared);
	if (TribAdhocSendPanes(&scanner, spec->tumbling ? shared : NULL))
		TribAdhocSendEnd(&scanner);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	shm_mq_detach(mqh);
	MemoryContextDelete(cxt);
}
