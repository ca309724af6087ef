/*
 * continuous.h
 *		Continuous quality windows per stream: the quality stage of the batch path, the fold
 *		that closes windows, alerts, and the SQL functions that manage them.
 */
#ifndef TRIBUTARY_QUALITY_CONTINUOUS_H
#define TRIBUTARY_QUALITY_CONTINUOUS_H

#include "postgres.h"

/* Register the quality stage (from _PG_init while shared_preload_libraries load). */
extern void TribQualityInit(void);

/*
 * Close, for every stream with quality windows, the windows the watermark or the wall
 * clock has passed (the launcher, every naptime, in its own transaction). Streams whose
 * fold lock another session holds are left to that session's batch.
 */
extern void TribQualityCloseDue(void);

/* Wait for the stream's quality batches in flight (before locking its catalog row). */
extern void TribQualityWaitForBatches(const char *stream);

/*
 * The stream's windows, their columns and its partials go (no foreign keys): drop_stream,
 * DROP OWNED, and create_stream for what an earlier stream of the name left.
 */
extern void TribQualityForgetStream(const char *stream);

#endif							/* TRIBUTARY_QUALITY_CONTINUOUS_H */
