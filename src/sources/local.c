/*
 * local.c
 *		The local source: messages pushed with tributary.ingest(), no broker, no worker.
 */
#include "postgres.h"

#include "sources/source.h"

static const TribSourceOption local_options[] = {{NULL}};

const TribSourceRoutine TribLocalSource = {
	.name = "local",
	.available = true,
	.needs_worker = false,
	.options = local_options,
};
