/*
 * position.h
 *		Source positions as text: the one form tributary.offsets and tributary.dead_letters
 *		store for every source (a Kafka partition and offset as decimal numbers, a Redis
 *		entry id as it is).
 */
#ifndef TRIBUTARY_POSITION_H
#define TRIBUTARY_POSITION_H

#include "postgres.h"

#include "tributary.h"

/* Longest canonical decimal text of an int64, without the terminating zero. */
#define TRIB_POSITION_INTEGER_MAX_LEN 19

extern char *TribMessagePositionText(const TribMessage *msg);
extern char *TribMessagePartitionText(const TribMessage *msg);
extern bool TribPositionParseInteger(const char *text, int64 max, int64 *result);

#endif							/* TRIBUTARY_POSITION_H */
