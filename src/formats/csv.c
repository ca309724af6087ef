/*
 * csv.c
 *		The csv format: a message is one CSV record (RFC 4180) whose fields map, in order,
 *		to the columns named by the stream's "columns" option.
 *
 * As in COPY's CSV mode, an unquoted empty field is NULL and a quoted empty field is an
 * empty string. One trailing line break is ignored. A record with the wrong number of
 * fields, an unterminated quote, or text after a closing quote is rejected.
 */
#include "postgres.h"

#include "formats/format.h"

static bool
TribCsvFail(TribMessageResult *res, const char *error, const char *detail)
{
	TribFormatFail(res, ERRCODE_BAD_COPY_FILE_FORMAT, error, detail);
	return false;
}

/* The field map: field i of a record goes to the column "columns" names i-th. */
static void
TribCsvOpen(TribTarget *t)
{
	ListCell   *lc;

	t->ncsv = list_length(t->def->csv_columns);
	t->csv_map = palloc(sizeof(int) * t->ncsv);
	foreach(lc, t->def->csv_columns)
	{
		int			col = TribTargetColumnIndex(t, lfirst(lc));

		t->csv_map[foreach_current_index(lc)] = col;
		t->always_given[col] = true;
	}
}

/* One CSV record's fields as the values of the columns of the field map. */
static bool
TribCsvFormat(TribTarget *t, const TribMessage *msg, TribRow *row, TribMessageResult *res)
{
	const char *data = msg->data;
	int			len = msg->len;
	char		delim = t->def->csv_delimiter;
	const char *p = data;
	const char *end = data + len;
	int			field = 0;
	StringInfoData value;

	if (!TribCheckEncoding(data, len, res))
		return false;

	/* one trailing line break belongs to the transport, not the record */
	if (end > p && end[-1] == '\n')
		end--;
	if (end > p && end[-1] == '\r')
		end--;

	initStringInfo(&value);
	for (;;)
	{
		bool		quoted = false;

		resetStringInfo(&value);
		if (p < end && *p == '"')
		{
			quoted = true;
			p++;
			for (;;)
			{
				if (p >= end)
					return TribCsvFail(res, "unterminated quoted field in CSV message",
									   psprintf("Field %d opens a quote that never closes.", field + 1));
				if (*p == '"')
				{
					if (p + 1 < end && p[1] == '"')
					{
						appendStringInfoChar(&value, '"');
						p += 2;
						continue;
					}
					p++;
					break;
				}
				appendStringInfoChar(&value, *p++);
			}
			if (p < end && *p != delim)
				return TribCsvFail(res, "unexpected character after quoted field in CSV message",
								   psprintf("Field %d has text after its closing quote.", field + 1));
		}
		else
		{
			const char *start = p;

			while (p < end && *p != delim)
			{
				if (*p == '"')
					return TribCsvFail(res, "unexpected quote in unquoted CSV field",
									   psprintf("Field %d contains a quote but does not start with one.", field + 1));
				p++;
			}
			appendBinaryStringInfo(&value, start, p - start);
		}

		if (field >= t->ncsv)
			return TribCsvFail(res, "too many fields in CSV message",
							   psprintf("The stream maps %d fields.", t->ncsv));
		if (!quoted && value.len == 0)
			TribRowSetNull(t, row, t->csv_map[field]);
		else if (!TribRowSetText(t, row, t->csv_map[field], value.data, value.len,
								 TRIB_TEXT_TERMINATED, res))
			return false;
		if (value.maxlen > TRIB_LARGE_VALUE_BYTES)
		{
			pfree(value.data);
			initStringInfo(&value);
		}
		field++;

		if (p >= end)
			break;
		p++;					/* the delimiter */
	}
	pfree(value.data);
	if (field != t->ncsv)
		return TribCsvFail(res, "too few fields in CSV message",
						   psprintf("The message has %d field%s; the stream maps %d.", field,
										field == 1 ? "" : "s", t->ncsv));
	return true;
}

static const TribOptionDecl csv_options[] = {
	{"columns", "{\"columns\": [\"id\", \"name\", ...]}",
	"A csv message's fields are mapped to target columns in the order \"columns\" gives."},
	{"delimiter"},
	{NULL}
};

const TribFormatRoutine TribCsvFormatRoutine = {
	.name = "csv",
	.options = csv_options,
	.open = TribCsvOpen,
	.format = TribCsvFormat,
};
