/*
 * sqlutil.c
 *		What the SQL entry points of the quality building blocks share; see sqlutil.h.
 */
#include "postgres.h"

#include <math.h>

#include "libpq/pqformat.h"
#include "utils/builtins.h"

#include "quality/sqlutil.h"
#include "varlena.h"

/* Aggregate support functions keep their state in the aggregate's context, so they need one. */
MemoryContext
TribAggMemoryContext(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcxt;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s called in a non-aggregate context", fname),
				 errdetail("It is a support function of a tributary aggregate."),
				 errhint("Call the aggregate instead.")));
	return aggcxt;
}

/* The stored bytes from their hex text, so a sketch survives dump, restore and copy as text. */
bytea *
TribSketchTextIn(const char *text, const char *typname)
{
	size_t		len;
	bytea	   *result;

	if (text[0] == '\\' && text[1] == 'x')
		text += 2;
	len = strlen(text);
	if (len % 2 != 0 || strspn(text, "0123456789abcdefABCDEF") != len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s", typname),
				 errdetail("A %s is written as \\x and an even number of hex digits.", typname),
				 errhint("Use the text output of a %s value.", typname)));
	result = palloc(VARHDRSZ + len / 2);
	SET_VARSIZE(result, VARHDRSZ + hex_decode(text, len, VARDATA(result)));
	return result;
}

/* Hex, as bytea prints: lossless and easy to compare. */
char *
TribSketchTextOut(const bytea *value)
{
	return TribHexText(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
}

/* The rest of the message, as the value's stored bytes; the caller checks them. */
bytea *
TribSketchRecv(StringInfo buf)
{
	int			len = buf->len - buf->cursor;
	bytea	   *value = palloc(VARHDRSZ + len);

	SET_VARSIZE(value, VARHDRSZ + len);
	pq_copymsgbytes(buf, VARDATA(value), len);
	return value;
}

/* The stored bytes as the binary form. */
bytea *
TribSketchSend(const bytea *value)
{
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	return pq_endtypsend(&buf);
}

/* Quantiles outside [0, 1] have no meaning; say so rather than clamp. */
void
TribCheckQuantile(double q, const char *fname)
{
	if (isnan(q) || q < 0.0 || q > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("quantile %g is not between 0 and 1", q),
				 errdetail("Quantiles of %s go from 0 (the minimum) to 1 (the maximum).", fname),
				 errhint("Write the median as 0.5 and the 99th percentile as 0.99.")));
}
