/*
 * adhoc.h
 *		Quality windows over any table (tributary.window_quality, column_quality), and the
 *		checks of window and slide that set_quality shares.
 */
#ifndef TRIBUTARY_QUALITY_ADHOC_H
#define TRIBUTARY_QUALITY_ADHOC_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* An interval's length in microseconds: an error unless positive and free of months. */
extern int64 TribQualityIntervalUsecs(Interval *iv, const char *what);

/* An error unless slide divides window (microseconds; the intervals for the message). */
extern void TribQualityCheckSlide(int64 window, int64 slide, Interval *window_iv,
								  Interval *slide_iv);

#endif							/* TRIBUTARY_QUALITY_ADHOC_H */
