/*
 * window.c
 *		One quality window's state, its merge, stored form and metrics (see window.h).
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "quality/window.h"
#include "quality/wire.h"

const char *const TribQualityComponentNames[TRIB_QC_COUNT] = {
	[TRIB_QC_COMPLETENESS] = "completeness",
	[TRIB_QC_UNIQUENESS] = "uniqueness",
	[TRIB_QC_VALIDITY] = "validity",
	[TRIB_QC_TIMELINESS] = "timeliness",
	[TRIB_QC_CONSISTENCY] = "consistency",
};

/* documented in docs/quality.md */
const double TribQualityDefaultWeights[TRIB_QC_COUNT] = {
	[TRIB_QC_COMPLETENESS] = 0.3,
	[TRIB_QC_UNIQUENESS] = 0.2,
	[TRIB_QC_VALIDITY] = 0.3,
	[TRIB_QC_TIMELINESS] = 0.1,
	[TRIB_QC_CONSISTENCY] = 0.1,
};

/* what a null contributes to a row's hash, and the step between attributes */
#define TRIB_QUALITY_NULL_HASH UINT64CONST(0x6a09e667f3bcc909)
#define TRIB_QUALITY_GOLDEN UINT64CONST(0x9e3779b97f4a7c15)

/* Types whose values the numeric metrics read (as double precision). */
bool
TribQualityTypeIsNumeric(Oid typid)
{
	switch (getBaseType(typid))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return true;
		default:
			return false;
	}
}

void
TribQualityColumnReaderInit(TribQualityColumnReader *reader, Oid typid, Oid collation,
							MemoryContext cxt)
{
	reader->typid = getBaseType(typid);
	reader->numeric = TribQualityTypeIsNumeric(typid);
	TribDatumHasherInit(&reader->hasher, typid, collation, cxt);
}

/* A numeric column's value as a double (numeric beyond double's range is infinite). */
static double
TribQualityDouble(Oid typid, Datum value)
{
	switch (typid)
	{
		case INT2OID:
			return (double) DatumGetInt16(value);
		case INT4OID:
			return (double) DatumGetInt32(value);
		case INT8OID:
			return (double) DatumGetInt64(value);
		case FLOAT4OID:
			return (double) DatumGetFloat4(value);
		case FLOAT8OID:
			return DatumGetFloat8(value);
		case NUMERICOID:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, value));
		default:
			elog(ERROR, "type %u is not numeric", typid);
	}
	return 0;					/* keep the compiler quiet */
}

void
TribQualityRowHasherInit(TribQualityRowHasher *hasher, TupleDesc desc, MemoryContext cxt)
{
	hasher->desc = desc;
	hasher->hashers = MemoryContextAllocZero(cxt, sizeof(TribDatumHasher) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped)
			TribDatumHasherInit(&hasher->hashers[i], att->atttypid,
								get_typcollation(att->atttypid), cxt);
	}
}

/*
 * A row's hash for duplicates without a key: every column that is not dropped, in order,
 * each value's hash (or the null mark) folded in. Equal rows hash equal.
 */
uint64
TribQualityHashTuple(TribQualityRowHasher *hasher, Datum *values, bool *isnull)
{
	return TribQualityHashTupleKeep(hasher, values, isnull, NULL);
}

/* The same, keeping each column's own hash in hashes[] (by attribute) when not NULL. */
uint64
TribQualityHashTupleKeep(TribQualityRowHasher *hasher, Datum *values, bool *isnull,
						 uint64 *hashes)
{
	uint64		h = 0;

	for (int i = 0; i < hasher->desc->natts; i++)
	{
		uint64		x;

		if (TupleDescAttr(hasher->desc, i)->attisdropped)
			continue;
		if (isnull[i])
			x = TRIB_QUALITY_NULL_HASH;
		else
		{
			x = TribHashDatum(&hasher->hashers[i], values[i]);
			if (hashes != NULL)
				hashes[i] = x;
		}
		h = TribHashMix64(h + x + (uint64) (i + 1) * TRIB_QUALITY_GOLDEN);
	}
	return h;
}

/* A whole-row value's hash (the row-type value of hasher's descriptor). */
uint64
TribQualityHashRow(TribQualityRowHasher *hasher, HeapTupleHeader row)
{
	HeapTupleData tuple;
	Datum	   *values = palloc(sizeof(Datum) * hasher->desc->natts);
	bool	   *isnull = palloc(sizeof(bool) * hasher->desc->natts);
	uint64		h;

	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	heap_deform_tuple(&tuple, hasher->desc, values, isnull);
	h = TribQualityHashTuple(hasher, values, isnull);
	pfree(values);
	pfree(isnull);
	return h;
}

TribQualityWindow *
TribQualityWindowCreate(int ncols, const bool *numeric, bool stream, MemoryContext cxt)
{
	TribQualityWindow *w = MemoryContextAllocZero(cxt, sizeof(TribQualityWindow));

	w->cxt = cxt;
	w->stream = stream;
	w->ncols = ncols;
	w->newest_event = DT_NOBEGIN;
	TribHllInitCapped(&w->keys, cxt, TRIB_QUALITY_KEYS_EXACT_MAX);
	TribDdsInit(&w->lag, cxt);
	w->cols = MemoryContextAllocZero(cxt, sizeof(TribQualityColumn) * Max(ncols, 1));
	for (int c = 0; c < ncols; c++)
	{
		TribQualityColumn *col = &w->cols[c];

		col->numeric = numeric[c];
		TribHllInit(&col->distinct, cxt);
		if (col->numeric)
		{
			TribDdsInit(&col->values, cxt);
			col->sums = MemoryContextAlloc(cxt, sizeof(TribXsum));
			TribXsumInit(col->sums);
		}
	}
	return w;
}

/* An empty window of the same columns as w (to merge w into). */
TribQualityWindow *
TribQualityWindowCreateLike(const TribQualityWindow *w, MemoryContext cxt)
{
	bool	   *numeric = palloc(sizeof(bool) * Max(w->ncols, 1));
	TribQualityWindow *copy;

	for (int c = 0; c < w->ncols; c++)
		numeric[c] = w->cols[c].numeric;
	copy = TribQualityWindowCreate(w->ncols, numeric, w->stream, cxt);
	pfree(numeric);
	return copy;
}

/* A row: counted, and its key's (or its own) hash kept for duplicates. */
void
TribQualityWindowAddRow(TribQualityWindow *w, uint64 key_hash)
{
	w->rows++;
	TribHllAdd(&w->keys, key_hash);
}

/* A row whose key is null: counted, never a duplicate. */
void
TribQualityWindowAddNullKeyRow(TribQualityWindow *w)
{
	w->rows++;
	w->null_keys++;
}

/* A non-null value of column col (a null value is simply not added). */
void
TribQualityWindowAddValue(TribQualityWindow *w, TribQualityColumnReader *reader, int col,
						  Datum value)
{
	TribQualityWindowAddValueHashed(w, reader, col, value, TribHashDatum(&reader->hasher, value));
}

/* The same, with the value's hash (TribHashDatum with reader's hasher) already known. */
void
TribQualityWindowAddValueHashed(TribQualityWindow *w, TribQualityColumnReader *reader, int col,
								Datum value, uint64 hash)
{
	TribQualityWindowAddValueParts(w, reader, col, value, hash, TRIB_QUALITY_PART_ALL);
}

/*
 * The same for a reader that needs only some parts (see window.h): hash is read only with
 * TRIB_QUALITY_PART_DISTINCT, so a caller without it need not make one.
 */
void
TribQualityWindowAddValueParts(TribQualityWindow *w, TribQualityColumnReader *reader, int col,
							   Datum value, uint64 hash, int parts)
{
	TribQualityColumn *c = &w->cols[col];

	c->non_null++;
	if (parts & TRIB_QUALITY_PART_DISTINCT)
		TribHllAdd(&c->distinct, hash);
	if (c->numeric)
	{
		double		v = TribQualityDouble(reader->typid, value);

		TribDdsAdd(&c->values, v);
		if (parts & TRIB_QUALITY_PART_SUMS)
			TribXsumAdd(c->sums, v);
	}
}

/* A row counted without its key, for a reader that reports no duplicates. */
void
TribQualityWindowCountRow(TribQualityWindow *w)
{
	w->rows++;
}

void
TribQualityWindowAddEvent(TribQualityWindow *w, TimestampTz event_time)
{
	if (event_time > w->newest_event)
		w->newest_event = event_time;
}

/* dst += src: every part merges exactly (windows of the same columns). */
void
TribQualityWindowMerge(TribQualityWindow *dst, const TribQualityWindow *src)
{
	if (dst->ncols != src->ncols)
		elog(ERROR, "quality windows of %d and %d columns cannot merge", dst->ncols, src->ncols);
	dst->stream |= src->stream;
	dst->rows += src->rows;
	dst->null_keys += src->null_keys;
	dst->dead += src->dead;
	dst->late += src->late;
	if (src->newest_event > dst->newest_event)
		dst->newest_event = src->newest_event;
	TribHllMerge(&dst->keys, &src->keys);
	TribDdsMerge(&dst->lag, &src->lag);
	for (int c = 0; c < dst->ncols; c++)
	{
		TribQualityColumn *d = &dst->cols[c];
		const TribQualityColumn *s = &src->cols[c];

		if (d->numeric != s->numeric)
			elog(ERROR, "quality windows disagree on whether column %d is numeric", c + 1);
		d->non_null += s->non_null;
		TribHllMerge(&d->distinct, &s->distinct);
		if (d->numeric)
		{
			TribDdsMerge(&d->values, &s->values);
			TribXsumMerge(d->sums, s->sums);
		}
	}
}

/* A sketch's stored bytes, preceded by their length. */
static void
TribQualityPutSketch(StringInfo buf, bytea *sketch)
{
	TribWirePutU32(buf, VARSIZE_ANY_EXHDR(sketch));
	appendBinaryStringInfo(buf, VARDATA_ANY(sketch), VARSIZE_ANY_EXHDR(sketch));
	pfree(sketch);
}

bytea *
TribQualityWindowSerialize(const TribQualityWindow *w)
{
	StringInfoData buf;

	TribWireBegin(&buf);
	TribWirePutU8(&buf, TRIB_QUALITY_FORMAT_VERSION);
	TribWirePutU8(&buf, w->stream ? 1 : 0);
	TribWirePutU32(&buf, (uint32) w->ncols);
	TribWirePutU64(&buf, w->rows);
	TribWirePutU64(&buf, w->null_keys);
	TribWirePutU64(&buf, w->dead);
	TribWirePutU64(&buf, w->late);
	TribWirePutU64(&buf, (uint64) w->newest_event);
	TribQualityPutSketch(&buf, TribHllSerialize(&w->keys));
	if (w->stream)
		TribQualityPutSketch(&buf, TribDdsSerialize(&w->lag));
	for (int c = 0; c < w->ncols; c++)
	{
		const TribQualityColumn *col = &w->cols[c];

		TribWirePutU8(&buf, col->numeric ? 1 : 0);
		TribWirePutU64(&buf, col->non_null);
		TribQualityPutSketch(&buf, TribHllSerialize(&col->distinct));
		if (col->numeric)
		{
			TribQualityPutSketch(&buf, TribDdsSerialize(&col->values));
			TribQualityPutSketch(&buf, TribXsumSerialize(col->sums));
		}
	}
	return TribWireFinish(&buf);
}

/* The next length-prefixed sketch: its bytes and length, or NULL when the data ends early. */
static const char *
TribQualityTakeSketch(TribWireReader *r, Size *len)
{
	*len = TribWireGetU32(r);
	return (const char *) TribWireTake(r, *len);
}

/* Raise the error for stored window bytes that are not one. */
static void
TribQualityBadState(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid quality window state"),
			 errdetail("%s", detail),
			 errhint("A quality state is written by tributary itself; it cannot be edited.")));
}

TribQualityWindow *
TribQualityWindowDeserialize(const char *data, Size len, MemoryContext cxt)
{
	TribWireReader r;
	uint8		version;
	uint8		flags;
	uint32		ncols;
	TribQualityWindow *w;
	const char *sk;
	Size		sklen;
	const char *bad;
	bool		numeric[TRIB_QUALITY_MAX_COLUMNS];

	TribWireReaderInit(&r, data, len);
	version = TribWireGetU8(&r);
	flags = TribWireGetU8(&r);
	ncols = TribWireGetU32(&r);
	if (!TribWireOk(&r))
		TribQualityBadState("The state is shorter than its header.");
	if (version != TRIB_QUALITY_FORMAT_VERSION)
		TribQualityBadState(psprintf("Its format version is %u; this tributary reads version %d.",
									 version, TRIB_QUALITY_FORMAT_VERSION));
	if (ncols > TRIB_QUALITY_MAX_COLUMNS || (flags & ~1) != 0)
		TribQualityBadState("Its header is not one tributary writes.");
	memset(numeric, 0, sizeof(numeric));
	w = TribQualityWindowCreate((int) ncols, numeric, (flags & 1) != 0, cxt);
	w->rows = TribWireGetU64(&r);
	w->null_keys = TribWireGetU64(&r);
	w->dead = TribWireGetU64(&r);
	w->late = TribWireGetU64(&r);
	w->newest_event = (TimestampTz) TribWireGetU64(&r);
	if ((sk = TribQualityTakeSketch(&r, &sklen)) == NULL)
		TribQualityBadState("It ends before its keys.");
	if ((bad = TribHllParse(&w->keys, sk, sklen)) != NULL)
		TribQualityBadState(bad);
	if (w->stream)
	{
		if ((sk = TribQualityTakeSketch(&r, &sklen)) == NULL)
			TribQualityBadState("It ends before its lag.");
		if ((bad = TribDdsParse(&w->lag, sk, sklen)) != NULL)
			TribQualityBadState(bad);
	}
	for (int c = 0; c < w->ncols; c++)
	{
		TribQualityColumn *col = &w->cols[c];

		col->numeric = TribWireGetU8(&r) != 0;
		col->non_null = TribWireGetU64(&r);
		if ((sk = TribQualityTakeSketch(&r, &sklen)) == NULL)
			TribQualityBadState("It ends inside a column.");
		if ((bad = TribHllParse(&col->distinct, sk, sklen)) != NULL)
			TribQualityBadState(bad);
		if (col->numeric)
		{
			TribDdsInit(&col->values, cxt);
			col->sums = MemoryContextAlloc(cxt, sizeof(TribXsum));
			TribXsumInit(col->sums);
			if ((sk = TribQualityTakeSketch(&r, &sklen)) == NULL)
				TribQualityBadState("It ends inside a column.");
			if ((bad = TribDdsParse(&col->values, sk, sklen)) != NULL)
				TribQualityBadState(bad);
			if ((sk = TribQualityTakeSketch(&r, &sklen)) == NULL)
				TribQualityBadState("It ends inside a column.");
			if ((bad = TribXsumParse(col->sums, sk, sklen)) != NULL)
				TribQualityBadState(bad);
		}
	}
	if (!TribWireOk(&r) || TribWireRemaining(&r) != 0)
		TribQualityBadState("Its length does not match its contents.");
	return w;
}

/* Distinct count of an hll as an integer (exact while the set is small). */
static int64
TribQualityDistinct(const TribHll *hll)
{
	return (int64) llround(TribHllEstimate(hll));
}

/* Column col's metrics; its distinct count only when asked (reading a sketch is not free). */
void
TribQualityColumnRead(const TribQualityWindow *w, int col, TribQualityColumnMetrics *m,
					  bool distinct)
{
	const TribQualityColumn *c = &w->cols[col];

	memset(m, 0, sizeof(*m));
	m->rows = w->rows;
	m->non_null = c->non_null;
	m->completeness = w->rows > 0 ? (double) c->non_null / (double) w->rows : NAN;
	m->distinct_count = distinct ? TribQualityDistinct(&c->distinct) : -1;
	m->numeric = c->numeric;
	if (!c->numeric || c->non_null == 0)
		return;
	m->has_values = TribXsumMean(c->sums, &m->mean);
	m->has_stddev = TribXsumStddev(c->sums, &m->stddev);
	if (!TribDdsQuantile(&c->values, 0.0, &m->min))
	{
		/* only NaN: every numeric metric is NaN, as float8 aggregates would say */
		m->has_values = true;
		m->mean = m->min = m->max = m->p50 = m->p90 = m->p99 = NAN;
		return;
	}
	(void) TribDdsQuantile(&c->values, 1.0, &m->max);
	(void) TribDdsQuantile(&c->values, 0.5, &m->p50);
	(void) TribDdsQuantile(&c->values, 0.9, &m->p90);
	(void) TribDdsQuantile(&c->values, 0.99, &m->p99);
	{
		double		q1,
					q3,
					iqr;

		(void) TribDdsQuantile(&c->values, 0.25, &q1);
		(void) TribDdsQuantile(&c->values, 0.75, &q3);
		iqr = q3 - q1;
		m->outliers = (int64) TribDdsCountOutside(&c->values,
												  q1 - TRIB_QUALITY_OUTLIER_K * iqr,
												  q3 + TRIB_QUALITY_OUTLIER_K * iqr);
		m->outlier_rate = (double) m->outliers / (double) c->non_null;
	}
}

void
TribQualityWindowRead(const TribQualityWindow *w, const double *weights,
					  TribQualityWindowMetrics *m)
{
	double		completeness = 0;
	double		outlier_rate = 0;
	int			numeric = 0;
	double		wsum = 0;
	double		score = 0;

	memset(m, 0, sizeof(*m));
	m->rows = w->rows;
	m->duplicates = (int64) (w->rows - w->null_keys) - TribQualityDistinct(&w->keys);
	if (m->duplicates < 0)
		m->duplicates = 0;		/* an estimate above the row count: none */
	for (int c = 0; c < w->ncols; c++)
	{
		TribQualityColumnMetrics cm;

		TribQualityColumnRead(w, c, &cm, false);
		completeness += w->rows > 0 ? cm.completeness : 0;
		m->outliers += cm.outliers;
		if (cm.numeric && cm.non_null > 0)
		{
			outlier_rate += cm.outlier_rate;
			numeric++;
		}
	}
	if (w->rows > 0 && w->ncols > 0)
	{
		m->has_component[TRIB_QC_COMPLETENESS] = true;
		m->component[TRIB_QC_COMPLETENESS] = completeness / w->ncols;
	}
	if (w->rows > 0)
	{
		m->has_component[TRIB_QC_UNIQUENESS] = true;
		m->component[TRIB_QC_UNIQUENESS] = 1.0 - (double) m->duplicates / (double) w->rows;
	}
	if (w->stream && w->rows + w->dead > 0)
	{
		m->has_component[TRIB_QC_VALIDITY] = true;
		m->component[TRIB_QC_VALIDITY] = (double) w->rows / (double) (w->rows + w->dead);
	}
	if (w->stream && w->rows > 0)
	{
		m->has_component[TRIB_QC_TIMELINESS] = true;
		m->component[TRIB_QC_TIMELINESS] = 1.0 - (double) w->late / (double) w->rows;
	}
	if (numeric > 0)
	{
		m->has_component[TRIB_QC_CONSISTENCY] = true;
		m->component[TRIB_QC_CONSISTENCY] = 1.0 - outlier_rate / numeric;
	}

	/*
	 * The weighted mean of the components there are; none, no score. Over a table (not a
	 * stream) there are no dead letters or late rows to count: validity and timeliness
	 * count as 1, so a stream without either scores as the same rows do over its table.
	 */
	for (int i = 0; i < TRIB_QC_COUNT; i++)
	{
		double		value;

		if (m->has_component[i])
			value = m->component[i];
		else if (!w->stream && w->rows > 0 && (i == TRIB_QC_VALIDITY || i == TRIB_QC_TIMELINESS))
			value = 1.0;
		else
			continue;
		if (weights[i] > 0)
		{
			wsum += weights[i];
			score += weights[i] * value;
		}
	}
	if (wsum > 0)
	{
		m->has_score = true;
		m->score = score / wsum;
	}
}

/*
 * A window's metrics as result values, in the order window_quality, quality_now and
 * quality_metrics share: rows, duplicates, the components, outliers, score, newest event.
 * Returns how many were filled (TRIB_QUALITY_WINDOW_DATUMS).
 */
int
TribQualityWindowDatums(const TribQualityWindowMetrics *m, TimestampTz newest_event,
						Datum *values, bool *nulls)
{
	int			i = 0;

	nulls[i] = false;
	values[i++] = Int64GetDatum((int64) m->rows);
	nulls[i] = false;
	values[i++] = Int64GetDatum(m->duplicates);
	for (int c = 0; c < TRIB_QC_COUNT; c++)
	{
		nulls[i] = !m->has_component[c];
		values[i++] = Float8GetDatum(m->component[c]);
	}
	nulls[i] = false;
	values[i++] = Int64GetDatum(m->outliers);
	nulls[i] = !m->has_score;
	values[i++] = Float8GetDatum(m->score);
	nulls[i] = newest_event == DT_NOBEGIN;
	values[i++] = TimestampTzGetDatum(newest_event);
	Assert(i == TRIB_QUALITY_WINDOW_DATUMS);
	return i;
}
