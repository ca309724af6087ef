/*
 * ingest.h
 *		The insert path shared by every source: a batch of messages becomes rows of the
 *		target table through COPY, and every message that cannot land is reported as dead.
 */
#ifndef TRIBUTARY_INGEST_H
#define TRIBUTARY_INGEST_H

#include "postgres.h"

#include "tributary.h"

typedef struct TribBatchCounts
{
	int64		messages;
	int64		rows;			/* rows COPY reported as stored */
	int64		dead;
	int64		bytes;
} TribBatchCounts;

extern void TribIngestBatch(StreamDef *def, TribMessage *msgs, int nmsgs,
							TribMessageResult *results, TribBatchCounts *counts);

#endif							/* TRIBUTARY_INGEST_H */
