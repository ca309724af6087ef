/*
 * json.c
 *		The json format: a message is one JSON object whose keys name target columns.
 *
 * Values are converted the way jsonb_populate_record converts them: a string gives its
 * text, a number or boolean its literal, null gives NULL; a json or jsonb column takes the
 * JSON text of the value; an array-typed column turns a JSON array into an array literal;
 * any other column gets the JSON text of an object or array and its input function
 * decides; a json[] or jsonb[] column takes each element's JSON text. Keys that match no
 * column are ignored, or kept in the overflow column when the stream names one. When a key
 * repeats, the last value wins, as in jsonb.
 *
 * Parsing uses PostgreSQL's own JSON parser (common/jsonapi.h) with callbacks, so there
 * is one pass over the message and no jsonb is built. Flat objects of plain values, the
 * common case, take a faster scanner that stores the same values (TribJsonFlat);
 * sql/json_fuzz.sql holds the two to the same values and verdicts on mutated messages.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "port/pg_bitutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "compat.h"
#include "formats/format.h"

/* Array columns have at most MAXDIM dimensions; deeper JSON arrays cannot fit one. */
#define TRIB_JSON_MAX_ARRAY_LEVEL MAXDIM

typedef struct TribJsonValue
{
	uint32		generation;		/* equals the state's generation when set */
	bool		isnull;
	bool		terminated;		/* text[len] is a NUL (a token or a converted array) */
	char	   *text;
	int			len;
} TribJsonValue;

typedef struct TribJsonState
{
	TribTarget *target;
	JsonLexContext *lex;
	MemoryContext cxt;			/* reset after every message */
	uint32		generation;
	TribJsonValue *values;		/* by column index */
	int		   *key_cols;		/* the fast path: the column the i-th key named last time */
	bool		saw_object;

	/* the top-level field being parsed */
	int			col;
	char	   *value_start;
	bool		have_scalar;
	char	   *scalar;

	/* an array value going into an array-typed column */
	bool		converting;
	bool		raw_elements;	/* json[]/jsonb[]: elements keep their JSON text */
	bool		too_deep;		/* more dimensions than an array can have */
	int			obj_depth;
	char	   *obj_start;
	char	   *elem_start;
	bool		elem_first[TRIB_JSON_MAX_ARRAY_LEVEL + 2];
	StringInfoData array;
	const char *too_deep_column;	/* set when a message is rejected for depth */

	StringInfoData overflow;
} TribJsonState;

static void
TribArrayAppendQuoted(StringInfo buf, const char *s, int len)
{
	appendStringInfoChar(buf, '"');
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '"' || s[i] == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, s[i]);
	}
	appendStringInfoChar(buf, '"');
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonObjectStart(void *arg)
{
	TribJsonState *s = arg;

	if (s->lex->lex_level == 0)
		s->saw_object = true;
	else if (s->converting && !s->raw_elements && !s->too_deep)
	{
		if (s->obj_depth == 0)
			s->obj_start = s->lex->token_start;
		s->obj_depth++;
	}
	TRIB_JSON_CB_RETURN;
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonObjectEnd(void *arg)
{
	TribJsonState *s = arg;

	if (s->converting && !s->raw_elements && !s->too_deep && s->lex->lex_level >= 1 &&
		--s->obj_depth == 0)
		TribArrayAppendQuoted(&s->array, s->obj_start,
							  s->lex->prev_token_terminator - s->obj_start);
	TRIB_JSON_CB_RETURN;
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonArrayStart(void *arg)
{
	TribJsonState *s = arg;
	int			level = s->lex->lex_level;

	if (level == 1 && s->col >= 0 && (s->target->cols[s->col].cls == TRIB_COL_ARRAY ||
									  s->target->cols[s->col].cls == TRIB_COL_JSON_ARRAY))
	{
		s->converting = true;
		s->raw_elements = s->target->cols[s->col].cls == TRIB_COL_JSON_ARRAY;
		s->too_deep = false;
		s->obj_depth = 0;
		resetStringInfo(&s->array);
	}
	if (!s->converting || s->too_deep || s->obj_depth > 0 || (s->raw_elements && level > 1))
		TRIB_JSON_CB_RETURN;
	if (level > TRIB_JSON_MAX_ARRAY_LEVEL)
	{
		s->too_deep = true;
		TRIB_JSON_CB_RETURN;
	}
	appendStringInfoChar(&s->array, '{');
	s->elem_first[level] = true;
	TRIB_JSON_CB_RETURN;
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonArrayEnd(void *arg)
{
	TribJsonState *s = arg;

	if (s->converting && !s->too_deep && s->obj_depth == 0 &&
		!(s->raw_elements && s->lex->lex_level > 1))
		appendStringInfoChar(&s->array, '}');
	TRIB_JSON_CB_RETURN;
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonArrayElementStart(void *arg, bool isnull)
{
	TribJsonState *s = arg;
	int			level = s->lex->lex_level - 1;

	if (!s->converting || s->too_deep || s->obj_depth > 0 || (s->raw_elements && level > 1))
		TRIB_JSON_CB_RETURN;
	if (!s->elem_first[level])
		appendStringInfoChar(&s->array, ',');
	s->elem_first[level] = false;
	s->elem_start = s->lex->token_start;
	TRIB_JSON_CB_RETURN;
}

/* json[]/jsonb[]: an element of the top array is its JSON text, quoted; null is NULL. */
static TRIB_JSON_CB_RETURN_TYPE
TribJsonArrayElementEnd(void *arg, bool isnull)
{
	TribJsonState *s = arg;

	if (!s->converting || !s->raw_elements || s->lex->lex_level != 2)
		TRIB_JSON_CB_RETURN;
	if (isnull)
		appendStringInfoString(&s->array, "NULL");
	else
		TribArrayAppendQuoted(&s->array, s->elem_start,
							  s->lex->prev_token_terminator - s->elem_start);
	TRIB_JSON_CB_RETURN;
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonScalar(void *arg, char *token, JsonTokenType type)
{
	TribJsonState *s = arg;
	int			level = s->lex->lex_level;

	if (level == 1)
	{
		s->have_scalar = true;
		s->scalar = token;
		TRIB_JSON_CB_RETURN;
	}
	if (s->converting && !s->raw_elements && !s->too_deep && s->obj_depth == 0)
	{
		if (type == JSON_TOKEN_NULL)
			appendStringInfoString(&s->array, "NULL");
		else
			TribArrayAppendQuoted(&s->array, token, strlen(token));
	}
	/* a nested value's token is used up (a json column takes the raw text): free it now */
	if (token != NULL)
		pfree(token);
	TRIB_JSON_CB_RETURN;
}

static TRIB_JSON_CB_RETURN_TYPE
TribJsonFieldStart(void *arg, char *fname, bool isnull)
{
	TribJsonState *s = arg;

	if (s->lex->lex_level != 1)
		TRIB_JSON_CB_RETURN;
	s->col = TribTargetFindColumn(s->target, fname, strlen(fname));
	if (s->col >= 0 && (s->col == s->target->overflow || s->target->cols[s->col].is_meta))
		s->col = -1;			/* not written from the payload */
	s->value_start = s->lex->token_start;
	s->have_scalar = false;
	s->converting = false;
	TRIB_JSON_CB_RETURN;
}

/* The value of a top-level field is complete: store it for its column, or in overflow. */
static TRIB_JSON_CB_RETURN_TYPE
TribJsonFieldEnd(void *arg, char *fname, bool isnull)
{
	TribJsonState *s = arg;
	char	   *raw;
	int			rawlen;

	if (s->lex->lex_level != 1)
		TRIB_JSON_CB_RETURN;
	raw = s->value_start;
	rawlen = s->lex->prev_token_terminator - raw;
	if (s->col >= 0)
	{
		TribJsonValue *v = &s->values[s->col];

		v->generation = s->generation;
		v->isnull = isnull;
		v->terminated = false;
		if (isnull)
			v->text = NULL;
		else if (s->target->cols[s->col].cls == TRIB_COL_JSON)
		{
			v->text = raw;
			v->len = rawlen;
		}
		else if (s->have_scalar)
		{
			v->text = s->scalar;
			v->len = strlen(s->scalar);
			v->terminated = true;
		}
		else if (s->converting)
		{
			if (s->too_deep)
				s->too_deep_column = s->target->cols[s->col].name;
			v->text = pnstrdup(s->array.data, s->array.len);
			v->len = s->array.len;
			v->terminated = true;
		}
		else
		{
			v->text = raw;
			v->len = rawlen;
		}
	}
	else if (s->target->overflow >= 0)
	{
		if (s->overflow.len > 0)
			appendStringInfoString(&s->overflow, ", ");
		escape_json(&s->overflow, fname);
		appendStringInfoString(&s->overflow, ": ");
		appendBinaryStringInfo(&s->overflow, raw, rawlen);
	}
	s->converting = false;
	TRIB_JSON_CB_RETURN;
}

static TribJsonState *
TribJsonStateCreate(TribTarget *t)
{
	TribJsonState *s = palloc0(sizeof(TribJsonState));

	s->target = t;
	s->values = palloc0(sizeof(TribJsonValue) * t->natts);
	s->key_cols = palloc(sizeof(int) * t->natts);
	for (int i = 0; i < t->natts; i++)
		s->key_cols[i] = -1;
	s->cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary json message",
								   ALLOCSET_DEFAULT_SIZES);
	return s;
}

/*
 * The fast path for the common message: one flat object whose keys and string values hold
 * no backslash, and whose values are strings, numbers, true, false or null, with no
 * overflow column. It stores the values as the callbacks below would (a json column takes
 * the value's JSON text, any other its text), without building tokens. It accepts only
 * what is valid JSON, checked as strictly as PostgreSQL's lexer; anything else (nested
 * values, escapes, a syntax error) returns false, and the message goes through
 * pg_parse_json, which reports errors precisely.
 */
static inline const char *
TribJsonSkipSpace(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/*
 * A string without escapes or control characters; p is at the opening quote. Eight bytes
 * at a time where it can: the lowest byte that is '"', '\\' or below 0x20 is found exactly
 * (the borrows of the zero-byte test only ever mark bytes above a true one).
 */
static inline const char *
TribJsonPlainString(const char *p, const char *end)
{
	p++;
#ifndef WORDS_BIGENDIAN
	while (end - p >= 8)
	{
		const uint64 ones = UINT64CONST(0x0101010101010101);
		const uint64 high = UINT64CONST(0x8080808080808080);
		uint64		w;
		uint64		quote;
		uint64		backslash;
		uint64		hit;

		memcpy(&w, p, 8);
		quote = w ^ (ones * '"');
		backslash = w ^ (ones * '\\');
		hit = (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
			   ((w - ones * 0x20) & ~w)) & high;
		if (hit != 0)
		{
			p += pg_rightmost_one_pos64(hit) / 8;
			return *p == '"' ? p + 1 : NULL;
		}
		p += 8;
	}
#endif
	for (; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"')
			return p + 1;
		if (c == '\\' || c < 0x20)
			return NULL;
	}
	return NULL;
}

/* A number by JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static inline const char *
TribJsonNumber(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	else
		return NULL;
	if (p < end && *p == '.')
	{
		const char *digits = ++p;

		while (p < end && *p >= '0' && *p <= '9')
			p++;
		if (p == digits)
			return NULL;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		const char *digits;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		digits = p;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		if (p == digits)
			return NULL;
	}
	return p;
}

/* len bytes equal: keys are short, and a call to memcmp cost more than comparing them */
static inline bool
TribJsonKeyEquals(const char *a, const char *b, int len)
{
	for (; len >= 8; a += 8, b += 8, len -= 8)
	{
		uint64		x;
		uint64		y;

		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
			return false;
	}
	for (; len > 0; len--)
		if (*a++ != *b++)
			return false;
	return true;
}

/*
 * The column a key names. Producers write their keys in one order, so the column the
 * key in this place named in the last message is tried before the search.
 */
static inline int
TribJsonKeyColumn(TribJsonState *s, int ordinal, const char *key, int len)
{
	TribTarget *t = s->target;
	int			col;

	if (ordinal < t->natts)
	{
		col = s->key_cols[ordinal];
		if (col >= 0 && t->cols[col].name_len == len && TribJsonKeyEquals(t->cols[col].name, key, len))
			return col;
	}
	col = TribTargetFindColumn(t, key, len);
	if (ordinal < t->natts)
		s->key_cols[ordinal] = col;
	return col;
}

static bool
TribJsonFlat(TribJsonState *s, const char *data, int len)
{
	const char *p = data;
	const char *end = data + len;
	int			ordinal = 0;

	p = TribJsonSkipSpace(p, end);
	if (p == end || *p != '{')
		return false;
	p = TribJsonSkipSpace(p + 1, end);
	if (p < end && *p == '}')
		return TribJsonSkipSpace(p + 1, end) == end;
	for (;;)
	{
		const char *key;
		const char *key_end;
		const char *value;
		const char *value_end;
		bool		isnull = false;
		int			col;

		if (p == end || *p != '"' || (key_end = TribJsonPlainString(p, end)) == NULL)
			return false;
		key = p + 1;
		p = TribJsonSkipSpace(key_end, end);
		if (p == end || *p != ':')
			return false;
		value = p = TribJsonSkipSpace(p + 1, end);
		if (p == end)
			return false;
		if (*p == '"')
			value_end = TribJsonPlainString(p, end);
		else if (*p == '-' || (*p >= '0' && *p <= '9'))
			value_end = TribJsonNumber(p, end);
		else if (end - p >= 4 && memcmp(p, "true", 4) == 0)
			value_end = p + 4;
		else if (end - p >= 5 && memcmp(p, "false", 5) == 0)
			value_end = p + 5;
		else if (end - p >= 4 && memcmp(p, "null", 4) == 0)
			value_end = p + 4, isnull = true;
		else
			return false;		/* an object, an array, or not JSON */
		if (value_end == NULL)
			return false;

		col = TribJsonKeyColumn(s, ordinal++, key, (int) (key_end - 1 - key));
		if (col >= 0 && !s->target->cols[col].is_meta)
		{
			TribJsonValue *v = &s->values[col];

			v->generation = s->generation;
			v->isnull = isnull;
			v->terminated = false;
			if (isnull)
				v->text = NULL;
			else if (s->target->cols[col].cls == TRIB_COL_JSON || *value != '"')
			{
				v->text = (char *) value;
				v->len = (int) (value_end - value);
			}
			else
			{
				v->text = (char *) value + 1;
				v->len = (int) (value_end - value) - 2;
			}
		}

		/* blanks, then ',' or '}': this also rejects "01", "truex" and "1x", as the lexer does */
		p = TribJsonSkipSpace(value_end, end);
		if (p == end)
			return false;
		if (*p == '}')
			return TribJsonSkipSpace(p + 1, end) == end;
		if (*p != ',')
			return false;
		p = TribJsonSkipSpace(p + 1, end);
	}
}

/*
 * A message of named values (TribMessage.pairs) as an object of strings: the values
 * TribJsonFlat would store for its JSON text, without the text. A json or jsonb column
 * takes a value as a JSON string.
 */
static bool
TribJsonPairs(TribJsonState *s, const TribMessage *msg, TribMessageResult *res)
{
	TribTarget *t = s->target;

	for (int i = 0; i < msg->npairs; i++)
	{
		const TribText *name = &msg->pairs[2 * i];
		const TribText *value = &msg->pairs[2 * i + 1];
		int			col;
		TribJsonValue *v;

		if (!TribCheckEncoding(name->text, name->len, res) ||
			!TribCheckEncoding(value->text, value->len, res))
			return false;
		col = TribJsonKeyColumn(s, i, name->text, name->len);
		if (col < 0 || t->cols[col].is_meta)
			continue;
		v = &s->values[col];
		v->generation = s->generation;
		v->isnull = false;
		v->terminated = true;
		if (t->cols[col].cls == TRIB_COL_JSON)
		{
			/* in the state's memory, reset after the message */
			MemoryContext old = MemoryContextSwitchTo(s->cxt);
			StringInfoData quoted;

			initStringInfo(&quoted);
			escape_json(&quoted, value->text);	/* no NUL in it: checked above */
			v->text = quoted.data;
			v->len = quoted.len;
			MemoryContextSwitchTo(old);
		}
		else
		{
			v->text = (char *) value->text;
			v->len = value->len;
		}
	}
	return true;
}

/* Set the row's values from the fields the message had, and the overflow column. */
static bool
TribJsonEmit(TribJsonState *s, TribRow *row, TribMessageResult *res)
{
	TribTarget *t = s->target;

	for (int i = 0; i < t->natts; i++)
	{
		TribJsonValue *v = &s->values[i];
		bool		ok = true;

		if (i == t->overflow && s->overflow.len > 0)
		{
			/* keys escaped by escape_json, values as parsed: one valid JSON object */
			StringInfoData obj;

			initStringInfo(&obj);
			appendStringInfoChar(&obj, '{');
			appendBinaryStringInfo(&obj, s->overflow.data, s->overflow.len);
			appendStringInfoChar(&obj, '}');
			ok = TribRowSetText(t, row, i, obj.data, obj.len,
								TRIB_TEXT_TERMINATED | TRIB_TEXT_PARSED_JSON, res);
			pfree(obj.data);
		}
		else if (v->generation != s->generation)
			continue;
		else if (v->isnull)
			TribRowSetNull(t, row, i);
		else
			ok = TribRowSetText(t, row, i, v->text, v->len,
								(v->terminated ? TRIB_TEXT_TERMINATED : 0) |
								(t->cols[i].cls == TRIB_COL_JSON ? TRIB_TEXT_PARSED_JSON : 0),
								res);
		if (!ok)
			return false;
	}
	return true;
}

/* One JSON object's keys as the row's columns. */
static bool
TribJsonFormat(TribTarget *t, const TribMessage *msg, TribRow *row, TribMessageResult *res)
{
	const char *data = msg->data;
	int			len = msg->len;
	TribJsonState *s;
	MemoryContext old;
	JsonSemAction sem = {0};
	JsonParseErrorType err;
	bool		ok = true;

	if (t->json == NULL)
		t->json = TribJsonStateCreate(t);
	s = t->json;
	s->generation++;
	if (msg->pairs != NULL && t->overflow < 0)
	{
		/*
		 * named values: no JSON text to read (the overflow column needs one: made below).
		 * In the caller's memory, as a failure's error must outlive the state's reset.
		 */
		ok = TribJsonPairs(s, msg, res);
		if (ok)
			ok = TribJsonEmit(s, row, res);
		MemoryContextReset(s->cxt);
		return ok;
	}
	data = TribMessageJson(msg, &len);
	if (!TribCheckEncoding(data, len, res))
		return false;
	if (t->overflow < 0 && TribJsonFlat(s, data, len))
		return TribJsonEmit(s, row, res);
	/* not the fast path's kind of message: forget what it stored, parse for real */
	s->generation++;
	old = MemoryContextSwitchTo(s->cxt);
	s->saw_object = false;
	s->col = -1;
	s->converting = false;
	s->too_deep_column = NULL;
	initStringInfo(&s->array);
	initStringInfo(&s->overflow);

	sem.semstate = s;
	sem.object_start = TribJsonObjectStart;
	sem.object_end = TribJsonObjectEnd;
	sem.array_start = TribJsonArrayStart;
	sem.array_end = TribJsonArrayEnd;
	sem.array_element_start = TribJsonArrayElementStart;
	sem.array_element_end = TribJsonArrayElementEnd;
	sem.object_field_start = TribJsonFieldStart;
	sem.object_field_end = TribJsonFieldEnd;
	sem.scalar = TribJsonScalar;

	s->lex = TribMakeJsonLexContext((char *) data, len, true);
	err = pg_parse_json(s->lex, &sem);
	if (err != JSON_SUCCESS)
	{
		MemoryContextSwitchTo(old);
		TribFormatFail(res, ERRCODE_INVALID_TEXT_REPRESENTATION,
					   "message is not valid JSON", json_errdetail(err, s->lex));
		ok = false;
	}
	else if (!s->saw_object)
	{
		MemoryContextSwitchTo(old);
		TribFormatFail(res, ERRCODE_INVALID_PARAMETER_VALUE,
					   "JSON message is not an object",
					   "A json stream maps the keys of one JSON object per message to columns.");
		ok = false;
	}
	else if (s->too_deep_column != NULL)
	{
		MemoryContextSwitchTo(old);
		TribFormatFail(res, ERRCODE_PROGRAM_LIMIT_EXCEEDED,
					   psprintf("JSON array for column \"%s\" has more than %d dimensions",
								s->too_deep_column, MAXDIM),
					   "PostgreSQL arrays have at most 6 dimensions.");
		ok = false;
	}
	else
	{
		/* the lexer's de-escaping buffer is as large as the longest string: give it back */
		if (s->lex->strval != NULL && s->lex->strval->maxlen > TRIB_LARGE_VALUE_BYTES)
		{
			pfree(s->lex->strval->data);
			initStringInfo(s->lex->strval);
		}
		MemoryContextSwitchTo(old);
		ok = TribJsonEmit(s, row, res);
	}
	MemoryContextReset(s->cxt);
	return ok;
}

static const TribOptionDecl json_options[] = {
	{"overflow"},
	{NULL}
};

const TribFormatRoutine TribJsonFormatRoutine = {
	.name = "json",
	.options = json_options,
	.takes_jsonb = true,
	.format = TribJsonFormat,
};
