/*
 * format.c
 *		The target table as the formats see it, COPY text escaping, and the text and bytes
 *		formats; dispatches json and csv to their own files.
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "datatype/timestamp.h"

#include "formats/format.h"

/* Index of a column the stream's options name; it was checked when they were resolved. */
int
TribTargetColumnIndex(TribTarget *t, const char *name)
{
	int			i = TribTargetFindColumn(t, name, strlen(name));

	if (i < 0)
		elog(ERROR, "column \"%s\" of stream \"%s\" vanished from its target", name, t->def->name);
	return i;
}

/* Describe the target's columns for one batch; the relation stays open by the caller. */
TribTarget *
TribTargetOpen(StreamDef *def, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TribTarget *t = palloc0(sizeof(TribTarget));

	t->def = def;
	t->rel = rel;
	t->natts = desc->natts;
	t->cols = palloc0(sizeof(TribColumn) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			base;

		t->cols[i].name = NameStr(att->attname);
		t->cols[i].name_len = (int) strlen(t->cols[i].name);
		/* COPY would write an identity ALWAYS column as if OVERRIDING SYSTEM VALUE; INSERT would not */
		t->cols[i].writable = !att->attisdropped && att->attgenerated == '\0' &&
			att->attidentity != ATTRIBUTE_IDENTITY_ALWAYS;
		t->cols[i].cls = TRIB_COL_SCALAR;
		if (att->attisdropped)
			continue;			/* its type is gone */
		base = getBaseType(att->atttypid);
		t->cols[i].is_bytea = base == BYTEAOID;
		t->cols[i].is_text = att->atttypid == TEXTOID;
		t->cols[i].typid = att->atttypid;
		t->cols[i].typmod = att->atttypmod;
		t->cols[i].typlen = att->attlen;
		if (base == JSONOID || base == JSONBOID)
			t->cols[i].cls = TRIB_COL_JSON;
		else if (OidIsValid(get_element_type(base)))
		{
			Oid			elem = getBaseType(get_element_type(base));

			t->cols[i].cls = (elem == JSONOID || elem == JSONBOID) ? TRIB_COL_JSON_ARRAY :
				TRIB_COL_ARRAY;
		}
	}
	for (int f = 0; f < TRIB_META_COUNT; f++)
	{
		t->meta_cols[f] = def->meta_columns[f] ? TribTargetColumnIndex(t, def->meta_columns[f]) : -1;
		if (t->meta_cols[f] >= 0)
			t->cols[t->meta_cols[f]].is_meta = true;
	}
	t->overflow = def->overflow_column ? TribTargetColumnIndex(t, def->overflow_column) : -1;
	t->single = def->column ? TribTargetColumnIndex(t, def->column) : -1;
	if (t->single >= 0)
	{
		t->csv_signature = TribTargetSignature(t, bms_make_singleton(t->single));
		t->payload_value = def->format->single_column;
	}
	if (def->format->open != NULL)
		def->format->open(t);
	return t;
}

/* Index of the writable column called name (not NUL-terminated), or -1. */
int
TribTargetFindColumn(TribTarget *t, const char *name, int len)
{
	for (int i = 0; i < t->natts; i++)
		if (t->cols[i].name_len == len && t->cols[i].writable &&
			memcmp(t->cols[i].name, name, len) == 0)
			return i;
	return -1;
}

/* The number of a column set within this batch, adding it when new. */
int
TribTargetSignature(TribTarget *t, Bitmapset *columns)
{
	ListCell   *lc;

	foreach(lc, t->signatures)
		if (bms_equal(lfirst(lc), columns))
			return foreach_current_index(lc);
	t->signatures = lappend(t->signatures, bms_copy(columns));
	return list_length(t->signatures) - 1;
}

/*
 * COPY's column list for a signature. A format with a field map (csv) keeps the field
 * order of its "columns" option; every other format writes columns in table order. Metadata columns come last, in
 * TribMetaField order.
 */
List *
TribTargetColumnNames(TribTarget *t, int signature)
{
	List	   *names = NIL;

	if (t->csv_map != NULL)
	{
		for (int i = 0; i < t->ncsv; i++)
			names = lappend(names, makeString(t->cols[t->csv_map[i]].name));
	}
	else
	{
		Bitmapset  *set = list_nth(t->signatures, signature);
		int			col = -1;

		while ((col = bms_next_member(set, col)) >= 0)
			names = lappend(names, makeString(t->cols[col].name));
	}
	for (int f = 0; f < TRIB_META_COUNT; f++)
		if (t->meta_cols[f] >= 0)
			names = lappend(names, makeString(t->cols[t->meta_cols[f]].name));
	return names;
}

/* Free the direct values after the first keep, when their rows are stored or formatted again. */
void
TribTargetForgetDirect(TribTarget *t, int keep)
{
	while (list_length(t->direct) > keep)
	{
		TribDirectValue *d = llast(t->direct);

		MemoryContextDelete(d->cxt);
		pfree(d);
		t->direct = list_delete_last(t->direct);
	}
}

/*
 * Hand COPY a large value of column col directly instead of escaping it into the line
 * (its field stays empty): the line, COPY's line and attribute buffers and the input
 * function's text would each hold it once more. The value is what the column's input
 * function makes of the text, as COPY would call it; an error it raises is the message's,
 * as any error while formatting. With owned, text is a palloc'd, NUL-terminated string the
 * caller gives up (freed here as soon as it is read). Returns false (the caller writes COPY
 * text) for values below TRIB_DIRECT_VALUE_BYTES and for columns of fixed-length types.
 */
bool
TribFormatDirect(TribTarget *t, const TribMessage *msg, int col, char *text, int len, bool owned)
{
	TribColumn *c = &t->cols[col];
	TribDirectValue *d;
	MemoryContext old;
	Oid			typinput;

	if (len < TRIB_DIRECT_VALUE_BYTES || c->typlen != -1)
		return false;
	if (c->infunc == NULL)
	{
		c->infunc = palloc(sizeof(FmgrInfo));
		getTypeInputInfo(c->typid, &typinput, &c->typioparam);
		fmgr_info(typinput, c->infunc);
	}
	d = palloc(sizeof(TribDirectValue));
	d->msg = msg;
	d->col = col;
	/* the value lives in a context of its own, with whatever its input function left */
	d->cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary direct value",
								   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(d->cxt);
	if (c->is_text)
		d->value = PointerGetDatum(cstring_to_text_with_len(text, len));
	else
		d->value = InputFunctionCall(c->infunc, owned ? text : pnstrdup(text, len),
									 c->typioparam, c->typmod);
	MemoryContextSwitchTo(old);
	if (owned)
		pfree(text);

	/* an input function that parses (jsonb_in) leaves copies as large as the value */
	if (MemoryContextMemAllocated(d->cxt, false) > 2 * (Size) len + ALLOCSET_DEFAULT_INITSIZE)
	{
		MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary direct value",
												  ALLOCSET_DEFAULT_SIZES);

		old = MemoryContextSwitchTo(cxt);
		d->value = PointerGetDatum(PG_DETOAST_DATUM_COPY(d->value));
		MemoryContextSwitchTo(old);
		MemoryContextDelete(d->cxt);
		d->cxt = cxt;
	}
	t->direct = lappend(t->direct, d);
	return true;
}

/* Append a value escaped for COPY's text format. */
void
TribCopyAppendEscaped(StringInfo buf, const char *s, int len)
{
	const char *start = s;
	const char *end = s + len;

	enlargeStringInfo(buf, len);
	for (const char *p = s; p < end; p++)
	{
		char		c = *p;
		char		esc;

		switch (c)
		{
			case '\\':
				esc = '\\';
				break;
			case '\t':
				esc = 't';
				break;
			case '\n':
				esc = 'n';
				break;
			case '\r':
				esc = 'r';
				break;
			default:
				continue;
		}
		appendBinaryStringInfo(buf, start, p - start);
		appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, esc);
		start = p + 1;
	}
	appendBinaryStringInfo(buf, start, end - start);
}

void
TribFormatFail(TribMessageResult *res, int sqlerrcode, const char *error, const char *detail)
{
	res->outcome = TRIB_DEAD;
	res->sqlerrcode = sqlerrcode;
	res->error = pstrdup(error);
	res->detail = detail ? pstrdup(detail) : NULL;
}

/* Text payloads must be valid in the server encoding (and so free of NUL bytes). */
/* Whether a text payload is valid in the database encoding; fills res when not. */
bool
TribCheckEncoding(const char *data, int len, TribMessageResult *res)
{
	if (pg_verify_mbstr(GetDatabaseEncoding(), data, len, true))
		return true;
	TribFormatFail(res, ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
				   psprintf("message is not valid %s text", GetDatabaseEncodingName()),
				   "The payload contains a byte sequence that is invalid in the database encoding, or a NUL byte.");
	return false;
}

/* Append bytea's hex input form, \x and two digits a byte, with the backslash as given. */
static void
TribAppendHex(StringInfo buf, const char *backslash, const char *data, int len)
{
	enlargeStringInfo(buf, len * 2 + 4);
	appendStringInfoString(buf, backslash);
	appendStringInfoChar(buf, 'x');
	buf->len += (int) hex_encode(data, len, buf->data + buf->len);
	buf->data[buf->len] = '\0';
}

/* Bytes as a bytea value in COPY text (the backslash escaped). */
static void
TribBytesFormat(const char *data, int len, StringInfo line)
{
	TribAppendHex(line, "\\\\", data, len);
}

static void
TribAppendNull(StringInfo line)
{
	appendStringInfoString(line, "\\N");
}

/* Append the message's metadata fields the stream maps, after its payload columns. */
static bool
TribAppendMetadata(TribTarget *t, const TribMessage *msg, StringInfo line, int start,
				   TribMessageResult *res)
{
	for (int f = 0; f < TRIB_META_COUNT; f++)
	{
		int			col = t->meta_cols[f];

		if (col < 0)
			continue;
		if (line->len > start)
			appendStringInfoChar(line, '\t');
		switch ((TribMetaField) f)
		{
			case TRIB_META_TOPIC:
				if (msg->topic == NULL)
					TribAppendNull(line);
				else
					TribCopyAppendEscaped(line, msg->topic, strlen(msg->topic));
				break;
			case TRIB_META_PARTITION:
				if (msg->partition < 0)
					TribAppendNull(line);
				else
					appendStringInfo(line, "%d", msg->partition);
				break;
			case TRIB_META_OFFSET:
				if (msg->offset < 0)
					TribAppendNull(line);
				else
					appendStringInfo(line, INT64_FORMAT, msg->offset);
				break;
			case TRIB_META_KEY:
				if (msg->key == NULL)
					TribAppendNull(line);
				else if (t->cols[col].is_bytea)
					TribBytesFormat(msg->key, msg->key_len, line);
				else if (!pg_verify_mbstr(GetDatabaseEncoding(), msg->key, msg->key_len, true))
				{
					TribFormatFail(res, ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
								   psprintf("message key is not valid %s text", GetDatabaseEncodingName()),
								   "Map the key to a bytea column to keep any bytes.");
					return false;
				}
				else
					TribCopyAppendEscaped(line, msg->key, msg->key_len);
				break;
			case TRIB_META_TIMESTAMP:
				if (msg->timestamp_ms < 0)
					TribAppendNull(line);
				else
				{
					TimestampTz ts = msg->timestamp_ms * 1000 +
						((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) * -1;
					char	   *text = DatumGetCString(DirectFunctionCall1(timestamptz_out,
																		   TimestampTzGetDatum(ts)));

					TribCopyAppendEscaped(line, text, strlen(text));
				}
				break;
			case TRIB_META_HEADERS:
				if (msg->headers == NULL)
					TribAppendNull(line);
				else
					TribCopyAppendEscaped(line, msg->headers, strlen(msg->headers));
				break;
			case TRIB_META_COUNT:
				break;
		}
	}
	return true;
}

bool
TribFormatMessage(TribTarget *t, const TribMessage *msg, StringInfo line, int *signature,
				  TribMessageResult *res)
{
	int			start = line->len;
	bool		ok = true;

	*signature = t->csv_signature;
	ok = t->def->format->format(t, msg, line, signature, res);
	if (ok)
		ok = TribAppendMetadata(t, msg, line, start, res);
	if (!ok)
	{
		line->len = start;
		line->data[start] = '\0';
		return false;
	}
	appendStringInfoChar(line, '\n');
	return true;
}

/*
 * The value of the text or bytes format's one column, made straight from the payload
 * when COPY reads the row's (empty) field for it: through COPY text, a large payload
 * would be held four more times (escaped line, COPY's line and attribute buffers, the
 * input function's result). A text column (text format) or bytea column (bytes format)
 * takes the payload's own varlena when the message has one, else one copy; other types
 * get what their input function makes of the text COPY would have given it.
 */
Datum
TribFormatPayloadValue(TribTarget *t, const TribMessage *msg, FmgrInfo *infunc,
					   Oid typioparam, int32 typmod)
{
	bool		bytes = t->def->format->binary;
	Oid			type = TupleDescAttr(RelationGetDescr(t->rel), t->single)->atttypid;
	StringInfoData str;

	Assert(t->def->format->single_column);
	if (type == (bytes ? BYTEAOID : TEXTOID))
	{
		if (msg->varlena != NULL)
			return PointerGetDatum(msg->varlena);
		return PointerGetDatum(cstring_to_text_with_len(msg->data, msg->len));
	}
	if (bytes)
	{
		initStringInfo(&str);
		TribAppendHex(&str, "\\", msg->data, msg->len);
	}
	else
		str.data = pnstrdup(msg->data, msg->len);
	return InputFunctionCall(infunc, str.data, typioparam, typmod);
}
