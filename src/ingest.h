/*
 * ingest.h
 *		The insert path shared by every source: a batch of messages becomes typed rows of
 *		the target table, and every message that cannot land is reported as dead.
 */
#ifndef TRIBUTARY_INGEST_H
#define TRIBUTARY_INGEST_H

#include "postgres.h"

#include "stage.h"
#include "tributary.h"

typedef struct TribBatchCounts
{
	int64		messages;
	int64		rows;			/* rows stored (a BEFORE trigger may skip some) */
	int64		dead;
	int64		bytes;
} TribBatchCounts;

extern void TribIngestBatch(StreamDef *def, TribMessage *msgs, int nmsgs,
							TribMessageResult *results, TribBatchCounts *counts,
							TribStageBatch *stage);

#endif							/* TRIBUTARY_INGEST_H */
