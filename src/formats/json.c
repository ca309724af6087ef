/*
 * json.c
 *		The json format: a message is one JSON object whose keys name target columns.
 *
 * Values are converted the way jsonb_populate_record converts them: a string gives its
 * text, a number or boolean its literal, null gives NULL; a json or jsonb column takes the
 * JSON text of the value; an array-typed column turns a JSON array into an array literal;
 * any other column gets the JSON text of an object or array and its input function
 * decides; a json[] or jsonb[] column takes each element's JSON text. Keys that match no column are ignored, or kept in the overflow column when
 * the stream names one. When a key repeats, the last value wins, as in jsonb.
 *
 * Parsing uses PostgreSQL's own JSON parser (common/jsonapi.h) with callbacks, so there
 * is one pass over the message and no jsonb is built.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
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
	}
	else if (s->converting && !s->raw_elements && !s->too_deep && s->obj_depth == 0)
	{
		if (type == JSON_TOKEN_NULL)
			appendStringInfoString(&s->array, "NULL");
		else
			TribArrayAppendQuoted(&s->array, token, strlen(token));
	}
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
		}
		else if (s->converting)
		{
			if (s->too_deep)
				s->too_deep_column = s->target->cols[s->col].name;
			v->text = pnstrdup(s->array.data, s->array.len);
			v->len = s->array.len;
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
	s->cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary json message",
								   ALLOCSET_DEFAULT_SIZES);
	return s;
}

/* Write the row's present columns in table order, and compute its signature. */
static void
TribJsonEmit(TribJsonState *s, StringInfo line, int *signature)
{
	TribTarget *t = s->target;
	Bitmapset  *present = NULL;
	bool		first = true;

	for (int i = 0; i < t->natts; i++)
	{
		TribJsonValue *v = &s->values[i];
		bool		is_overflow = i == t->overflow && s->overflow.len > 0;

		if (!is_overflow && v->generation != s->generation)
			continue;
		present = bms_add_member(present, i);
		if (!first)
			appendStringInfoChar(line, '\t');
		first = false;
		if (is_overflow)
		{
			appendStringInfoChar(line, '{');
			TribCopyAppendEscaped(line, s->overflow.data, s->overflow.len);
			appendStringInfoChar(line, '}');
		}
		else if (v->isnull)
			appendStringInfoString(line, "\\N");
		else
			TribCopyAppendEscaped(line, v->text, v->len);
	}
	*signature = TribTargetSignature(t, present);
	bms_free(present);
}

bool
TribJsonFormat(TribTarget *t, const char *data, int len, StringInfo line, int *signature,
			   TribMessageResult *res)
{
	TribJsonState *s;
	MemoryContext old;
	JsonSemAction sem = {0};
	JsonParseErrorType err;
	bool		ok = true;

	if (t->json == NULL)
		t->json = TribJsonStateCreate(t);
	s = t->json;
	old = MemoryContextSwitchTo(s->cxt);
	s->generation++;
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
		MemoryContextSwitchTo(old);
		TribJsonEmit(s, line, signature);
	}
	MemoryContextReset(s->cxt);
	return ok;
}
