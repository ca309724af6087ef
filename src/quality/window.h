/*
 * window.h
 *		One quality window's state: the rows of one time window, summarized so that states
 *		merge exactly, and the metrics read from it.
 *
 * A window counts its rows, keeps the hashes of their keys (or of the whole rows when
 * there is no key) for duplicates, and per watched column its non-null count, a distinct
 * count (hll.h), and for numeric columns a quantile sketch (ddsketch.h) and exact sums
 * (xsum.h). Every part is a function of the multiset of rows only, so a window built row
 * by row in one pass, from per-batch pieces, or from parallel workers' partial states
 * merged in any order is the same state, and gives the same metrics to the last bit:
 * that is what makes tributary.window_quality over a table equal to the windows a stream
 * computed as its rows landed.
 *
 * A stream's windows also know what only the stream sees: the messages that were
 * dead-lettered, the rows that came later than the watermark, the ingest lag (arrival
 * minus event time). An ad-hoc window leaves them empty, and their metrics are null.
 *
 * Stored format (TribQualityWindowSerialize), version TRIB_QUALITY_FORMAT_VERSION; every
 * integer little-endian:
 *	 byte 0		format version
 *	 byte 1		flags: 1 = stream window (dead, late and lag are meaningful)
 *	 uint16		number of columns
 *	 uint64		rows, rows whose key is null, dead, late
 *	 int64		newest event time (microseconds since 2000-01-01; INT64_MIN for none)
 *	 sketch		keys (hll), lag (ddsketch, seconds; stream windows only)
 *	 per column: byte numeric (0/1), uint64 non-null, sketch distinct (hll), and when
 *				 numeric: sketch values (ddsketch), sketch sums (xsum)
 * where a sketch is uint32 length then that sketch's own stored bytes (with its own
 * version byte).
 */
#ifndef TRIBUTARY_QUALITY_WINDOW_H
#define TRIBUTARY_QUALITY_WINDOW_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

#include "quality/datumhash.h"
#include "quality/ddsketch.h"
#include "quality/hll.h"
#include "quality/xsum.h"

#define TRIB_QUALITY_FORMAT_VERSION 1
#define TRIB_QUALITY_MAX_COLUMNS 1600	/* a table's own limit */

/* keys kept exactly per window for duplicates (then estimated); 1 MiB of set at most */
#define TRIB_QUALITY_KEYS_EXACT_MAX 65536

/* Tukey's fences: outside [p25 - k * IQR, p75 + k * IQR] is an outlier */
#define TRIB_QUALITY_OUTLIER_K 1.5

typedef struct TribQualityColumn
{
	bool		numeric;
	uint64		non_null;
	TribHll		distinct;
	TribDds		values;			/* numeric columns */
	TribXsum   *sums;			/* numeric columns (large: allocated apart) */
} TribQualityColumn;

typedef struct TribQualityWindow
{
	MemoryContext cxt;
	bool		stream;			/* dead, late and lag are known */
	int			ncols;
	uint64		rows;
	uint64		null_keys;		/* rows whose key is null: never duplicates */
	uint64		dead;			/* messages dead-lettered (streams) */
	uint64		late;			/* rows behind the watermark when they landed (streams) */
	TimestampTz newest_event;	/* DT_NOBEGIN when none */
	TribHll		keys;
	TribDds		lag;			/* arrival - event time in seconds (streams) */
	TribQualityColumn *cols;
} TribQualityWindow;

/*
 * How one watched column's values are read: how to hash them, and for a numeric column how
 * to make a double of them.
 */
typedef struct TribQualityColumnReader
{
	Oid			typid;
	bool		numeric;
	TribDatumHasher hasher;
} TribQualityColumnReader;

/*
 * The parts of a window a reader may leave out (TribQualityWindowAddValueParts,
 * TribQualityWindowCountRow): tributary.window_quality reports no distinct counts, means or
 * standard deviations, and column_quality no duplicates, so over a table each builds only
 * what it reads. Such a window is incomplete: only the parts it was built with are
 * meaningful. It merges with windows of the same parts (a parallel worker sends its own to
 * the leader in the stored form), but is never stored in a table or returned as a state.
 */
#define TRIB_QUALITY_PART_KEYS		0x01	/* the keys' set (duplicates) */
#define TRIB_QUALITY_PART_DISTINCT	0x02	/* each column's distinct count */
#define TRIB_QUALITY_PART_SUMS		0x04	/* each numeric column's exact sums */
#define TRIB_QUALITY_PART_ALL		0x07

/* How a row is hashed for duplicates when there is no key: each column's hasher. */
typedef struct TribQualityRowHasher
{
	TupleDesc	desc;
	TribDatumHasher *hashers;	/* by attribute; unused for dropped ones */
} TribQualityRowHasher;

/* The metrics of one column. */
typedef struct TribQualityColumnMetrics
{
	uint64		rows;
	uint64		non_null;
	double		completeness;	/* non_null / rows; NaN when rows = 0 */
	int64		distinct_count;
	bool		numeric;		/* the rest is meaningful (and null when no value) */
	bool		has_values;
	double		mean;
	bool		has_stddev;
	double		stddev;
	double		min;
	double		max;
	double		p50;
	double		p90;
	double		p99;
	int64		outliers;
	double		outlier_rate;
} TribQualityColumnMetrics;

/* Which metrics make the score, by name in weights and thresholds. */
typedef enum TribQualityComponent
{
	TRIB_QC_COMPLETENESS,
	TRIB_QC_UNIQUENESS,
	TRIB_QC_VALIDITY,
	TRIB_QC_TIMELINESS,
	TRIB_QC_CONSISTENCY,
	TRIB_QC_COUNT
} TribQualityComponent;

extern const char *const TribQualityComponentNames[TRIB_QC_COUNT];
extern const double TribQualityDefaultWeights[TRIB_QC_COUNT];

/* The metrics of one window. */
typedef struct TribQualityWindowMetrics
{
	uint64		rows;
	int64		duplicates;
	bool		has_component[TRIB_QC_COUNT];
	double		component[TRIB_QC_COUNT];	/* each in [0, 1] */
	bool		has_score;
	double		score;
	int64		outliers;		/* over the numeric columns */
} TribQualityWindowMetrics;

extern void TribQualityColumnReaderInit(TribQualityColumnReader *reader, Oid typid,
										Oid collation, MemoryContext cxt);
extern bool TribQualityTypeIsNumeric(Oid typid);
extern void TribQualityRowHasherInit(TribQualityRowHasher *hasher, TupleDesc desc,
									 MemoryContext cxt);
extern uint64 TribQualityHashRow(TribQualityRowHasher *hasher, HeapTupleHeader row);
extern uint64 TribQualityHashTuple(TribQualityRowHasher *hasher, Datum *values, bool *isnull);
extern uint64 TribQualityHashTupleKeep(TribQualityRowHasher *hasher, Datum *values, bool *isnull,
									   uint64 *hashes);

extern TribQualityWindow *TribQualityWindowCreate(int ncols, const bool *numeric, bool stream,
												  MemoryContext cxt);
extern TribQualityWindow *TribQualityWindowCreateLike(const TribQualityWindow *w,
													  MemoryContext cxt);
extern void TribQualityWindowAddRow(TribQualityWindow *w, uint64 key_hash);
extern void TribQualityWindowAddNullKeyRow(TribQualityWindow *w);
extern void TribQualityWindowAddValue(TribQualityWindow *w, TribQualityColumnReader *reader,
									  int col, Datum value);
extern void TribQualityWindowAddValueHashed(TribQualityWindow *w, TribQualityColumnReader *reader,
											int col, Datum value, uint64 hash);
extern void TribQualityWindowAddValueParts(TribQualityWindow *w, TribQualityColumnReader *reader,
										   int col, Datum value, uint64 hash, int parts);
extern void TribQualityWindowCountRow(TribQualityWindow *w);
extern void TribQualityWindowAddEvent(TribQualityWindow *w, TimestampTz event_time);
extern void TribQualityWindowMerge(TribQualityWindow *dst, const TribQualityWindow *src);
extern bytea *TribQualityWindowSerialize(const TribQualityWindow *w);
extern TribQualityWindow *TribQualityWindowDeserialize(const char *data, Size len,
													   MemoryContext cxt);

extern void TribQualityColumnRead(const TribQualityWindow *w, int col,
								  TribQualityColumnMetrics *m, bool distinct);
/* the window-level values every result row of a window starts with (after start and end) */
#define TRIB_QUALITY_WINDOW_DATUMS (4 + TRIB_QC_COUNT)
extern int	TribQualityWindowDatums(const TribQualityWindowMetrics *m, TimestampTz newest_event,
									Datum *values, bool *nulls);
extern void TribQualityWindowRead(const TribQualityWindow *w, const double *weights,
								  TribQualityWindowMetrics *m);

#endif							/* TRIBUTARY_QUALITY_WINDOW_H */
