/*
 * kafka.h
 *		The Kafka source: options, and the consuming loop of a stream worker.
 */
#ifndef TRIBUTARY_KAFKA_H
#define TRIBUTARY_KAFKA_H

#include "postgres.h"

#include "tributary.h"

/* Check a kafka stream's options (librdkafka's own checks included); raises on error. */
extern void TribKafkaValidateOptions(StreamDef *def);

/*
 * Consume the stream as its worker number index (from 0) until SIGHUP asks for a reload;
 * SIGTERM ends the process. The consumer outlives the call: the next call, with the
 * reloaded definition, keeps it when the options it was built from are unchanged.
 */
extern void TribKafkaRun(StreamDef *def, int index);

/* A dead letter's stored partition and offset (text) back into msg, for replay. */
extern void TribKafkaRestorePosition(StreamDef *def, TribMessage *msg, const char *partition,
									 const char *position);

#endif							/* TRIBUTARY_KAFKA_H */
