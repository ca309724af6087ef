/*
 * batch.h
 *		The one batch path every source commits through: tributary.ingest, replay of dead
 *		letters, and every stream worker.
 */
#ifndef TRIBUTARY_BATCH_H
#define TRIBUTARY_BATCH_H

#include "postgres.h"

#include "ingest.h"
#include "tributary.h"

/* Whose rights put the rows in. */
typedef enum TribBatchIdentity
{
	TRIB_BATCH_AS_CALLER,		/* ingest, replay: the calling role, as an INSERT would */
	TRIB_BATCH_AS_TABLE_OWNER	/* workers: the target's owner, security-restricted */
} TribBatchIdentity;

/*
 * What the source does inside the batch's transaction once the rows and dead letters are
 * in: store its positions (Kafka offsets), or settle replayed dead letters.
 */
typedef void (*TribBatchSettleFn) (void *arg, TribMessage *msgs, TribMessageResult *results,
								   int nmsgs);

typedef struct TribBatchRequest
{
	StreamDef  *def;
	TribMessage *msgs;
	int			nmsgs;
	TribBatchIdentity identity;
	bool		write_dead_letters; /* false for replay, whose dead letters exist */
	bool		count_stats;	/* false for replay, which counts once per call */
	TribBatchSettleFn settle;	/* or NULL */
	void	   *settle_arg;
} TribBatchRequest;

extern void TribBatchCommit(TribBatchRequest *req, TribMessageResult *results,
							TribBatchCounts *counts);

#endif							/* TRIBUTARY_BATCH_H */
