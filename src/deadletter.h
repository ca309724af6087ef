/*
 * deadletter.h
 *		tributary.dead_letters: writing the messages a batch could not store, and
 *		replaying them after the cause is fixed.
 */
#ifndef TRIBUTARY_DEADLETTER_H
#define TRIBUTARY_DEADLETTER_H

#include "postgres.h"

#include "ingest.h"
#include "tributary.h"

extern void TribDeadLettersWrite(StreamDef *def, TribMessage *msgs,
								 TribMessageResult *results, int nmsgs);
extern void TribDeadLettersReplay(StreamDef *def, TribBatchCounts *counts);

#endif							/* TRIBUTARY_DEADLETTER_H */
