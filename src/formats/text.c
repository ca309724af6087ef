/*
 * text.c
 *		The text format: the whole payload, valid text in the database encoding, is one
 *		column's value (TribRowSetPayload makes it).
 */
#include "postgres.h"

#include "formats/format.h"

/* The payload, once it is known to be text in the database encoding. */
static bool
TribTextFormat(TribTarget *t, const TribMessage *msg, TribRow *row, TribMessageResult *res)
{
	return TribCheckEncoding(msg->data, msg->len, res) && TribRowSetPayload(t, msg, row, res);
}

static const TribOptionDecl text_options[] = {
	{"column"},
	{NULL}
};

const TribFormatRoutine TribTextFormatRoutine = {
	.name = "text",
	.options = text_options,
	.single_column = true,
	.format = TribTextFormat,
};
