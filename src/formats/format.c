/*
 * format.c
 *		The target table as the formats see it, a row's values made from text, metadata
 *		columns, and the payload column of the text and bytes formats.
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "datatype/timestamp.h"

#include "formats/convert.h"
#include "formats/format.h"
#include "varlena.h"

/* Index of a column the stream's options name; it was checked when they were resolved. */
int
TribTargetColumnIndex(TribTarget *t, const char *name)
{
	int			i = TribTargetFindColumn(t, name, strlen(name));

	if (i < 0)
		elog(ERROR, "column \"%s\" of stream \"%s\" vanished from its target", name, t->def->name);
	return i;
}

/* How the column's values are made, and its input function for the others. */
static void
TribColumnSetUp(TribColumn *c, Form_pg_attribute att)
{
	Oid			typinput;
	Oid			elem;

	c->typid = att->atttypid;
	c->typmod = att->atttypmod;
	c->basetypid = getBaseType(att->atttypid);
	if (c->basetypid == JSONOID || c->basetypid == JSONBOID)
		c->cls = TRIB_COL_JSON;
	else if (OidIsValid(elem = get_element_type(c->basetypid)))
	{
		elem = getBaseType(elem);
		c->cls = (elem == JSONOID || elem == JSONBOID) ? TRIB_COL_JSON_ARRAY : TRIB_COL_ARRAY;
	}
	/*
	 * text and json themselves (not domains, which check constraints) skip the input
	 * function; integers and timestamps use it only for shapes convert.c does not take
	 */
	if (c->typid == TEXTOID)
		c->conv = TRIB_CONV_TEXT;
	else if (c->typid == JSONOID)
		c->conv = TRIB_CONV_JSON;
	else if (c->typid == INT4OID)
		c->conv = TRIB_CONV_INT4;
	else if (c->typid == INT8OID)
		c->conv = TRIB_CONV_INT8;
	else if (c->typid == FLOAT8OID)
		c->conv = TRIB_CONV_FLOAT8;
	else if (c->typid == TIMESTAMPOID && c->typmod < 0)
		c->conv = TRIB_CONV_TIMESTAMP;
	else if (c->typid == TIMESTAMPTZOID && c->typmod < 0)
		c->conv = TRIB_CONV_TIMESTAMPTZ;
	getTypeInputInfo(c->typid, &typinput, &c->typioparam);
	fmgr_info(typinput, &c->infunc);
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
	t->always_given = palloc0(sizeof(bool) * desc->natts);
	t->cur_col = -1;
	initStringInfo(&t->scratch);
	t->value_cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary large value",
										 ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		t->cols[i].name = NameStr(att->attname);
		t->cols[i].name_len = (int) strlen(t->cols[i].name);
		/* an identity ALWAYS column is not written, as INSERT without OVERRIDING would not */
		t->cols[i].writable = !att->attisdropped && att->attgenerated == '\0' &&
			att->attidentity != ATTRIBUTE_IDENTITY_ALWAYS;
		if (t->cols[i].writable)
			TribColumnSetUp(&t->cols[i], att);
	}
	for (int f = 0; f < TRIB_META_COUNT; f++)
	{
		t->meta_cols[f] = def->meta_columns[f] ? TribTargetColumnIndex(t, def->meta_columns[f]) : -1;
		if (t->meta_cols[f] >= 0)
		{
			t->cols[t->meta_cols[f]].is_meta = true;
			t->always_given[t->meta_cols[f]] = true;
		}
	}
	t->overflow = def->overflow_column ? TribTargetColumnIndex(t, def->overflow_column) : -1;
	t->single = def->column ? TribTargetColumnIndex(t, def->column) : -1;
	if (t->single >= 0 && def->format->single_column)
		t->always_given[t->single] = true;
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

void
TribRowSetNull(TribTarget *t, TribRow *row, int col)
{
	row->given[col] = true;
	row->nulls[col] = true;
	row->values[col] = (Datum) 0;
}

void
TribRowSetDatum(TribTarget *t, TribRow *row, int col, Datum value)
{
	row->given[col] = true;
	row->nulls[col] = false;
	row->values[col] = value;
}

#if PG_VERSION_NUM >= 160000
/* A value its column's input function refused softly (16+): the message's error. */
static void
TribFormatFailValue(TribMessageResult *res, TribColumn *c, ErrorData *edata)
{
	TribFormatFail(res, edata->sqlerrcode, edata->message,
				   edata->detail ? psprintf("Column \"%s\": %s", c->name, edata->detail) :
				   psprintf("Column \"%s\".", c->name));
	res->reason = TRIB_DEAD_BAD_VALUE;
	res->at_insert = true;
}
#endif

/*
 * Set column col of the row from len bytes of text, as COPY would read that field: the
 * column's input function with its typmod, or the text itself for text (and for json when
 * the json format parsed it). A large value is converted in a context of its own and
 * copied out, so what an input function leaves behind (jsonb_in's parse) is freed at
 * once. Returns false with res filled when (16+) the input function refuses the value;
 * on 15 it raises, and ingest.c blames t->cur_col.
 */
bool
TribRowSetText(TribTarget *t, TribRow *row, int col, const char *text, int len, int flags,
			   TribMessageResult *res)
{
	TribColumn *c = &t->cols[col];
	char	   *str = (char *) text;
	bool		large = len >= TRIB_LARGE_VALUE_BYTES;
	MemoryContext old = CurrentMemoryContext;
	Datum		value;

	switch (c->conv)
	{
		case TRIB_CONV_TEXT:
			TribRowSetDatum(t, row, col, PointerGetDatum(cstring_to_text_with_len(text, len)));
			return true;
		case TRIB_CONV_JSON:
			if (flags & TRIB_TEXT_PARSED_JSON)
			{
				TribRowSetDatum(t, row, col, PointerGetDatum(cstring_to_text_with_len(text, len)));
				return true;
			}
			break;
		case TRIB_CONV_INT4:
			{
				int32		v;

				if (TribConvertInt4(text, len, &v))
				{
					TribRowSetDatum(t, row, col, Int32GetDatum(v));
					return true;
				}
			}
			break;
		case TRIB_CONV_INT8:
			{
				int64		v;

				if (TribConvertInt8(text, len, &v))
				{
					TribRowSetDatum(t, row, col, Int64GetDatum(v));
					return true;
				}
			}
			break;
		case TRIB_CONV_FLOAT8:
			{
				float8		v;

				if (TribConvertFloat8(text, len, &v))
				{
					TribRowSetDatum(t, row, col, Float8GetDatum(v));
					return true;
				}
			}
			break;
		case TRIB_CONV_TIMESTAMP:
		case TRIB_CONV_TIMESTAMPTZ:
			{
				Timestamp	v;

				if (TribConvertTimestamp(text, len, c->conv == TRIB_CONV_TIMESTAMPTZ, &v))
				{
					TribRowSetDatum(t, row, col, TimestampGetDatum(v));
					return true;
				}
			}
			break;
		case TRIB_CONV_INPUT:
			break;
	}
	if (large)
		MemoryContextSwitchTo(t->value_cxt);
	if (!(flags & TRIB_TEXT_TERMINATED))
	{
		if (large)
			str = pnstrdup(text, len);
		else
		{
			resetStringInfo(&t->scratch);
			appendBinaryStringInfo(&t->scratch, text, len);
			str = t->scratch.data;
		}
	}
	t->cur_col = col;
#if PG_VERSION_NUM >= 160000
	{
		ErrorSaveContext escontext = {T_ErrorSaveContext};

		escontext.details_wanted = true;
		if (!InputFunctionCallSafe(&c->infunc, str, c->typioparam, c->typmod,
								   (Node *) &escontext, &value))
		{
			MemoryContextSwitchTo(old);
			TribFormatFailValue(res, c, escontext.error_data);
			MemoryContextReset(t->value_cxt);
			t->cur_col = -1;
			return false;
		}
	}
#else
	value = InputFunctionCall(&c->infunc, str, c->typioparam, c->typmod);
#endif
	t->cur_col = -1;
	if (large)
	{
		int16		typlen;
		bool		typbyval;

		MemoryContextSwitchTo(old);
		get_typlenbyval(c->typid, &typlen, &typbyval);
		value = datumCopy(value, typbyval, typlen);
		MemoryContextReset(t->value_cxt);
	}
	TribRowSetDatum(t, row, col, value);
	return true;
}

void
TribFormatFail(TribMessageResult *res, int sqlerrcode, const char *error, const char *detail)
{
	res->outcome = TRIB_DEAD;
	res->reason = TRIB_DEAD_MALFORMED;
	res->sqlerrcode = sqlerrcode;
	res->error = pstrdup(error);
	res->detail = detail ? pstrdup(detail) : NULL;
}

/*
 * Append len bytes as a JSON string: quotes, backslashes and control characters (a NUL
 * byte too, as \u0000, which no JSON reader here takes) escaped, other bytes as they are.
 */
void
TribAppendJsonString(StringInfo buf, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t		run = 0;

	appendStringInfoCharMacro(buf, '"');
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(buf, s + run, (int) (i - run));
		run = i + 1;
		switch (c)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				appendStringInfoString(buf, "\\u00");
				appendStringInfoCharMacro(buf, hex[c >> 4]);
				appendStringInfoCharMacro(buf, hex[c & 15]);
				break;
		}
	}
	appendBinaryStringInfo(buf, s + run, (int) (len - run));
	appendStringInfoCharMacro(buf, '"');
}

/*
 * The message as JSON text: its data, or, for a message of named values (pairs), an
 * object of them as strings, {"name": "value", ...}.
 */
const char *
TribMessageJson(const TribMessage *msg, int *len)
{
	StringInfoData buf;

	if (msg->pairs == NULL)
	{
		*len = msg->len;
		return msg->data;
	}
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < msg->npairs; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		TribAppendJsonString(&buf, msg->pairs[2 * i].text, msg->pairs[2 * i].len);
		appendStringInfoString(&buf, ": ");
		TribAppendJsonString(&buf, msg->pairs[2 * i + 1].text, msg->pairs[2 * i + 1].len);
	}
	appendStringInfoChar(&buf, '}');
	*len = buf.len;
	return buf.data;
}

/*
 * Whether data is ASCII without NUL bytes, eight bytes at a time: such text is valid in
 * every server encoding (all are supersets of ASCII). Most payloads and Redis field values
 * are, and pg_verify_mbstr's call and set-up per string were a tenth of a worker's time
 * for short strings.
 */
static inline bool
TribIsPlainAscii(const char *data, int len)
{
	const uint64 high = UINT64CONST(0x8080808080808080);
	const uint64 ones = UINT64CONST(0x0101010101010101);
	int			i = 0;

	for (; i + 8 <= len; i += 8)
	{
		uint64		w;

		memcpy(&w, data + i, 8);
		/* a byte >= 0x80, or a zero byte (w - ones borrows into its high bit) */
		if ((w & high) != 0 || ((w - ones) & ~w & high) != 0)
			return false;
	}
	for (; i < len; i++)
	{
		unsigned char c = (unsigned char) data[i];

		if (c == 0 || c >= 0x80)
			return false;
	}
	return true;
}

/* Whether a text payload is valid in the database encoding (and so free of NUL bytes); fills res when not. */
bool
TribCheckEncoding(const char *data, int len, TribMessageResult *res)
{
	if (TribIsPlainAscii(data, len) ||
		pg_verify_mbstr(GetDatabaseEncoding(), data, len, true))
		return true;
	TribFormatFail(res, ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
				   psprintf("message is not valid %s text", GetDatabaseEncodingName()),
				   "The payload contains a byte sequence that is invalid in the database encoding, or a NUL byte.");
	return false;
}

/*
 * A metadata field given as text: through the column's input function, as for a payload
 * field (an integer field into a text column, a timestamp into a date).
 */
static bool
TribRowSetMetaText(TribTarget *t, TribRow *row, int col, const char *text,
				   TribMessageResult *res)
{
	return TribRowSetText(t, row, col, text, strlen(text), TRIB_TEXT_TERMINATED, res);
}

/* Set the message's metadata fields the stream maps; each is the column's natural type or text. */
static bool
TribRowSetMetadata(TribTarget *t, const TribMessage *msg, TribRow *row, TribMessageResult *res)
{
	char		buf[32];

	for (int f = 0; f < TRIB_META_COUNT; f++)
	{
		int			col = t->meta_cols[f];
		TribColumn *c;
		bool		ok = true;

		if (col < 0)
			continue;
		c = &t->cols[col];
		switch ((TribMetaField) f)
		{
			case TRIB_META_TOPIC:
			case TRIB_META_STREAM:	/* a Redis key, where Kafka has its topic */
				if (msg->topic == NULL)
					TribRowSetNull(t, row, col);
				else
					ok = TribRowSetMetaText(t, row, col, msg->topic, res);
				break;
			case TRIB_META_PARTITION:
				if (msg->partition < 0)
					TribRowSetNull(t, row, col);
				else if (c->typid == INT4OID)
					TribRowSetDatum(t, row, col, Int32GetDatum(msg->partition));
				else
				{
					snprintf(buf, sizeof(buf), "%d", msg->partition);
					ok = TribRowSetMetaText(t, row, col, buf, res);
				}
				break;
			case TRIB_META_OFFSET:
				if (msg->offset < 0)
					TribRowSetNull(t, row, col);
				else if (c->typid == INT8OID)
					TribRowSetDatum(t, row, col, Int64GetDatum(msg->offset));
				else
				{
					snprintf(buf, sizeof(buf), INT64_FORMAT, msg->offset);
					ok = TribRowSetMetaText(t, row, col, buf, res);
				}
				break;
			case TRIB_META_KEY:
				if (msg->key == NULL)
					TribRowSetNull(t, row, col);
				else if (c->typid == BYTEAOID)
					TribRowSetDatum(t, row, col, PointerGetDatum(TribBytea(msg->key, msg->key_len)));
				else if (c->basetypid == BYTEAOID)
					ok = TribRowSetMetaText(t, row, col, TribHexText(msg->key, msg->key_len), res);
				else if (!pg_verify_mbstr(GetDatabaseEncoding(), msg->key, msg->key_len, true))
				{
					TribFormatFail(res, ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
								   psprintf("message key is not valid %s text", GetDatabaseEncodingName()),
								   "Map the key to a bytea column to keep any bytes.");
					ok = false;
				}
				else
					ok = TribRowSetText(t, row, col, msg->key, msg->key_len, 0, res);
				break;
			case TRIB_META_TIMESTAMP:
				if (msg->timestamp_ms < 0)
					TribRowSetNull(t, row, col);
				else
				{
					TimestampTz ts = msg->timestamp_ms * 1000 -
						(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

					if (c->typid == TIMESTAMPTZOID)
						TribRowSetDatum(t, row, col, TimestampTzGetDatum(ts));
					else
						ok = TribRowSetMetaText(t, row, col,
												DatumGetCString(DirectFunctionCall1(timestamptz_out,
																					TimestampTzGetDatum(ts))),
												res);
				}
				break;
			case TRIB_META_HEADERS:
				{
					const char *headers = TribMessageHeaders(msg);

					if (headers == NULL)
						TribRowSetNull(t, row, col);
					else
						ok = TribRowSetText(t, row, col, headers, strlen(headers),
											TRIB_TEXT_TERMINATED | TRIB_TEXT_PARSED_JSON, res);
				}
				break;
			case TRIB_META_ID:
				if (msg->position == NULL)
					TribRowSetNull(t, row, col);
				else
					ok = TribRowSetMetaText(t, row, col, msg->position, res);
				break;
			case TRIB_META_COUNT:
				break;
		}
		if (!ok)
			return false;
	}
	return true;
}

bool
TribFormatMessage(TribTarget *t, const TribMessage *msg, TribRow *row, TribMessageResult *res)
{
	return t->def->format->format(t, msg, row, res) && TribRowSetMetadata(t, msg, row, res);
}

/*
 * The text and bytes formats' one column, made straight from the payload: a text column
 * (text format) or bytea column (bytes format) takes the payload's own varlena when the
 * message has one, else one copy; other types get what their input function makes of
 * the text (for bytes, bytea's hex form).
 */
bool
TribRowSetPayload(TribTarget *t, const TribMessage *msg, TribRow *row, TribMessageResult *res)
{
	bool		bytes = t->def->format->binary;
	TribColumn *c = &t->cols[t->single];

	Assert(t->def->format->single_column);
	if (c->typid == (bytes ? BYTEAOID : TEXTOID))
	{
		TribRowSetDatum(t, row, t->single,
						msg->varlena != NULL ? PointerGetDatum(msg->varlena) :
						PointerGetDatum(TribBytea(msg->data, msg->len)));
		return true;
	}
	if (bytes)
		return TribRowSetText(t, row, t->single, TribHexText(msg->data, msg->len),
							  msg->len * 2 + 2, TRIB_TEXT_TERMINATED, res);
	return TribRowSetText(t, row, t->single, msg->data, msg->len, 0, res);
}
