/*
 * kafka.h
 *		The Kafka source's functions its routine (kafka.c) names from its other files.
 */
#ifndef TRIBUTARY_KAFKA_H
#define TRIBUTARY_KAFKA_H

#include "postgres.h"

#include "tributary.h"

/* Check a kafka stream's options (librdkafka's own checks included); raises on error. */
extern void TribKafkaValidateOptions(StreamDef *def);

/* A dead letter's stored partition and offset (text) back into msg, for replay. */
extern void TribKafkaRestorePosition(StreamDef *def, TribMessage *msg, const char *partition,
									 const char *position);

#endif							/* TRIBUTARY_KAFKA_H */
