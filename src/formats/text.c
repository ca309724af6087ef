/*
 * text.c
 *		The text format: the whole payload, valid text in the database encoding, is one
 *		column's value (TribFormatPayloadValue makes it; the COPY field stays empty).
 */
#include "postgres.h"

#include "formats/format.h"

/* Only the encoding is checked: the value itself goes to COPY directly. */
static bool
TribTextFormat(TribTarget *t, const TribMessage *msg, StringInfo line, int *signature,
			   TribMessageResult *res)
{
	return TribCheckEncoding(msg->data, msg->len, res);
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
