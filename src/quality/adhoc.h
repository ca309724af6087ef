/*
 * adhoc.h
 *		Quality windows over any table (tributary.window_quality, column_quality), and the
 *		checks of window, slide and columns that set_quality shares.
 */
#ifndef TRIBUTARY_QUALITY_ADHOC_H
#define TRIBUTARY_QUALITY_ADHOC_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/array.h"
#include "utils/relcache.h"

/* An interval's length in microseconds: an error unless positive and free of months. */
extern int64 TribQualityIntervalUsecs(Interval *iv, const char *what);

/* A user column of rel by name, and the watched columns of a call (adhoc.c says how). */
extern AttrNumber TribQualityUserColumn(Relation rel, const char *name, const char *what,
										const char *where);
extern char **TribQualityColumnsArg(Relation rel, ArrayType *arg, const char *where, int *ncols);

/* An error unless slide divides window (microseconds; the intervals for the message). */
extern void TribQualityCheckSlide(int64 window, int64 slide, Interval *window_iv,
								  Interval *slide_iv);

#endif							/* TRIBUTARY_QUALITY_ADHOC_H */
