/*
 * consume.h
 *		The one consume loop of stream workers: a source's consumer (sources/source.h),
 *		one batch per transaction through the batch path.
 */
#ifndef TRIBUTARY_CONSUME_H
#define TRIBUTARY_CONSUME_H

#include "postgres.h"

#include "tributary.h"

/* Serve def as worker number index: keep the consumer across a reload if it can, or open one. */
extern void TribConsumeStart(StreamDef *def, int index);

/* Consume batches until a reload is asked for (ConfigReloadPending). */
extern void TribConsumeUntilReload(void);

/* After an error, its transaction rolled back: give the batch in flight back to the source. */
extern void TribConsumeAbandonBatch(void);

#endif							/* TRIBUTARY_CONSUME_H */
