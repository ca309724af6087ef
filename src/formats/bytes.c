/*
 * bytes.c
 *		The bytes format: the whole payload, any bytes, is one bytea column's value
 *		(TribRowSetPayload makes it).
 */
#include "postgres.h"

#include "catalog/pg_type.h"

#include "formats/format.h"

/* Any bytes are a value: nothing to check. */
static bool
TribBytesFormatMessage(TribTarget *t, const TribMessage *msg, TribRow *row,
					   TribMessageResult *res)
{
	return TribRowSetPayload(t, msg, row, res);
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
