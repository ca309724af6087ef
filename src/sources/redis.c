/*
 * redis.c
 *		The Redis Streams source, by name only: it has no consumer yet, so streams of it are
 *		refused (TribSourceRoutine.available). Its options are listed so the refusal, not
 *		an "unknown option", is what a user sees.
 */
#include "postgres.h"

#include "sources/source.h"

static const TribSourceOption redis_options[] = {
	{"url"},
	{"stream_key", "{\"stream_key\": \"key\"}"},
	{"group"},
	{"consumer"},
	{NULL}
};

const TribSourceRoutine TribRedisSource = {
	.name = "redis",
	.available = false,
	.needs_worker = true,
	.options = redis_options,
};
