/*
 * bytes.c
 *		The bytes format: the whole payload, any bytes, is one bytea column's value
 *		(TribFormatPayloadValue makes it; the COPY field stays empty).
 */
#include "postgres.h"

#include "catalog/pg_type.h"

#include "formats/format.h"

/* Any bytes are a value: nothing to check. */
static bool
TribBytesFormatMessage(TribTarget *t, const TribMessage *msg, StringInfo line, int *signature,
					   TribMessageResult *res)
{
	return true;
}

static const TribOptionDecl bytes_options[] = {
	{"column"},
	{NULL}
};

const TribFormatRoutine TribBytesFormatRoutine = {
	.name = "bytes",
	.options = bytes_options,
	.single_column = true,
	.single_column_type = BYTEAOID,
	.binary = true,
	.format = TribBytesFormatMessage,
};
