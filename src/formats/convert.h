/*
 * convert.h
 *		Direct conversions of the commonest value shapes, with the input function's result.
 *
 * A message's bigint and timestamptz values are mostly plain digits and ISO 8601 times
 * ("2026-11-23T00:00:00.001Z"). For exactly those shapes these functions build the Datum
 * the type's input function would build, without copying the text to a terminated string
 * and without the general date/time tokenizer; for anything else they decline (return
 * false) and the caller uses the input function, which also reports errors. They never
 * raise an error and never accept what the input function would refuse.
 */
#ifndef TRIBUTARY_CONVERT_H
#define TRIBUTARY_CONVERT_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern bool TribConvertInt8(const char *s, int len, int64 *result);
extern bool TribConvertInt4(const char *s, int len, int32 *result);
extern bool TribConvertFloat8(const char *s, int len, float8 *result);
extern bool TribConvertTimestamp(const char *s, int len, bool with_zone, Timestamp *result);

#endif							/* TRIBUTARY_CONVERT_H */
