/*
 * options.c
 *		Validates a stream's options (the jsonb given to create_stream and alter_stream)
 *		against its source, its format and its target table, and resolves them into the
 *		StreamDef fields the ingest path uses. The options every stream takes are listed
 *		here; each source lists its own in its routine (sources/source.h) and checks their
 *		values itself (its validate callback).
 *
 * Every check runs before anything is written, so a bad call changes nothing. The same
 * code runs again when a stream is loaded, so a target altered since (a column dropped)
 * is reported with the same words.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "optvalue.h"
#include "formats/format.h"
#include "sources/source.h"
#include "tributary.h"

/* The options every stream takes; its format and its source add their own. */
static const char *const common_options[] = {"format", "batch_size", "batch_ms"};

/* Whether decls (ended by {NULL}) declare the option called key. */
static bool
TribOptionDeclared(const TribOptionDecl *decls, const char *key)
{
	for (const TribOptionDecl *o = decls; o->name != NULL; o++)
		if (strcmp(o->name, key) == 0)
			return true;
	return false;
}

static void
TribAppendOptionNames(StringInfo buf, const TribOptionDecl *decls)
{
	for (const TribOptionDecl *o = decls; o->name != NULL; o++)
		appendStringInfo(buf, "%s%s", buf->len ? ", " : "", o->name);
}

static const char *
TribValidOptionList(StreamDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(common_options); i++)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", common_options[i]);
	TribAppendOptionNames(&buf, def->format->options);
	TribAppendOptionNames(&buf, def->source->options);
	return buf.data;
}

static void
TribCheckOptionKnown(StreamDef *def, const char *key)
{
	for (int i = 0; i < lengthof(common_options); i++)
		if (strcmp(common_options[i], key) == 0)
			return;
	if (TribOptionDeclared(def->format->options, key) || TribOptionDeclared(def->source->options, key))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown option \"%s\" for stream \"%s\"", key, def->name),
			 errdetail("The stream has source %s and format %s.",
					   def->source->name, def->format->name),
			 errhint("Valid options are: %s.", TribValidOptionList(def))));
}

/* The required options of decls (a source's or a format's) that def->options lacks. */
static void
TribCheckRequiredOptions(StreamDef *def, const TribOptionDecl *decls, const char *kind)
{
	for (const TribOptionDecl *o = decls; o->name != NULL; o++)
		if (o->required_example != NULL &&
			getKeyJsonValueFromContainer(&def->options->root, o->name, strlen(o->name), NULL) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream \"%s\" needs option \"%s\"", def->name, o->name),
					 o->required_detail != NULL ? errdetail("%s", o->required_detail) :
					 errdetail("A %s stream reads from the place its options name.", kind),
					 errhint("Add %s to the options.", o->required_example)));
}

static char *
TribOptionString(StreamDef *def, const char *key, JsonbValue *v)
{
	if (v->type != jbvString || v->val.string.len == 0)
		TribBadOption(def, key, "a non-empty string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static int
TribOptionInt(StreamDef *def, const char *key, JsonbValue *v, int min, int max)
{
	int64		n;

	if (!TribJsonbInteger(v, &n) || n < min || n > max)
		TribBadOption(def, key, psprintf("an integer from %d to %d", min, max));
	return (int) n;
}

static bool
TribIsIdentityAlways(Oid relid, AttrNumber attnum)
{
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
	bool		always = false;

	if (HeapTupleIsValid(tup))
	{
		always = ((Form_pg_attribute) GETSTRUCT(tup))->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
		ReleaseSysCache(tup);
	}
	return always;
}

/*
 * A target column that tributary may write: exists, and is neither a system column, a
 * generated column nor GENERATED ALWAYS AS IDENTITY.
 */
static AttrNumber
TribCheckColumn(StreamDef *def, const char *column, const char *role)
{
	AttrNumber	attnum = get_attnum(def->target, column);

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						column, get_rel_name(def->target)),
				 errdetail("Stream \"%s\" names it as its %s.", def->name, role),
				 errhint("Name an existing column of the target table.")));
	if ((get_attgenerated(def->target, attnum) != '\0' ||
		 TribIsIdentityAlways(def->target, attnum)) &&
		strcmp(role, "key column") != 0 && strcmp(role, "event time column") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("column \"%s\" of relation \"%s\" is generated",
						column, get_rel_name(def->target)),
				 errdetail("Stream \"%s\" names it as its %s, but generated columns cannot be written.",
						   def->name, role),
				 errhint("Name a column that is not generated.")));
	return attnum;
}

/* The csv "columns" option: a non-empty array of distinct column names. */
static List *
TribOptionColumns(StreamDef *def, JsonbValue *v)
{
	List	   *columns = NIL;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerSize(v->val.binary.data) == 0)
		TribBadOption(def, "columns", "a non-empty array of column names");
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		char	   *name;
		ListCell   *lc;

		if (tok != WJB_ELEM)
			continue;
		if (elem.type != jbvString)
			TribBadOption(def, "columns", "a non-empty array of column names");
		name = pnstrdup(elem.val.string.val, elem.val.string.len);
		foreach(lc, columns)
			if (strcmp(lfirst(lc), name) == 0)
				TribBadOption(def, "columns", "an array of distinct column names");
		TribCheckColumn(def, name, "csv column");
		columns = lappend(columns, name);
	}
	return columns;
}

static void TribCheckColumnType(StreamDef *def, const char *column, const char *role, int ntypes,
								const Oid *types, const char *expected);

/*
 * The "metadata" option: {"key": "column", "partition": "column", ...}, of the fields the
 * stream's source fills (TribSourceRoutine.metadata).
 */
static void
TribOptionMetadata(StreamDef *def, JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	col;
	JsonbIteratorToken tok;
	uint32		known = def->source->metadata;
	StringInfoData expected;
	int			nknown = 0;

	initStringInfo(&expected);
	appendStringInfoString(&expected, "an object mapping ");
	for (int f = 0; f < TRIB_META_COUNT; f++)
		nknown += (known & TRIB_META_BIT(f)) != 0;
	for (int f = 0, i = 0; f < TRIB_META_COUNT; f++)
		if (known & TRIB_META_BIT(f))
			appendStringInfo(&expected, "%s%s", i++ == 0 ? "" : i == nknown ? " and " : ", ",
							 TribMetaFieldNames[f]);
	appendStringInfo(&expected, " (what a %s source gives) to column names", def->source->name);

	if (known == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream \"%s\" of source %s cannot map metadata to columns", def->name,
						def->source->name),
				 errdetail("Messages of a %s source carry no metadata.", def->source->name),
				 errhint("Remove option \"metadata\".")));
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		TribBadOption(def, "metadata", expected.data);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *field;
		char	   *column;
		int			f;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &col, true);
		field = pnstrdup(k.val.string.val, k.val.string.len);
		for (f = 0; f < TRIB_META_COUNT; f++)
			if ((known & TRIB_META_BIT(f)) && strcmp(field, TribMetaFieldNames[f]) == 0)
				break;
		if (f == TRIB_META_COUNT || col.type != jbvString || col.val.string.len == 0)
			TribBadOption(def, "metadata", expected.data);
		column = pnstrdup(col.val.string.val, col.val.string.len);
		TribCheckColumn(def, column, psprintf("%s metadata column", field));
		for (int g = 0; g < TRIB_META_COUNT; g++)
			if (def->meta_columns[g] != NULL && strcmp(def->meta_columns[g], column) == 0)
				TribBadOption(def, "metadata", "an object that maps each column once");
		def->meta_columns[f] = column;
	}
	if (def->meta_columns[TRIB_META_TIMESTAMP] != NULL)
	{
		Oid			time_types[] = {TIMESTAMPTZOID, TIMESTAMPOID};

		TribCheckColumnType(def, def->meta_columns[TRIB_META_TIMESTAMP], "timestamp metadata column",
							2, time_types, "timestamptz or timestamp");
	}
	if (def->meta_columns[TRIB_META_HEADERS] != NULL)
	{
		Oid			json_types[] = {JSONBOID, JSONOID};

		TribCheckColumnType(def, def->meta_columns[TRIB_META_HEADERS], "headers metadata column",
							2, json_types, "jsonb or json");
	}
}

/* A metadata column cannot also receive the payload (csv columns, column, overflow). */
static void
TribCheckMetadataApart(StreamDef *def)
{
	ListCell   *lc;

	for (int f = 0; f < TRIB_META_COUNT; f++)
	{
		const char *m = def->meta_columns[f];
		bool		clash = false;

		if (m == NULL)
			continue;
		foreach(lc, def->csv_columns)
			clash |= strcmp(lfirst(lc), m) == 0;
		clash |= def->column != NULL && strcmp(def->column, m) == 0;
		clash |= def->overflow_column != NULL && strcmp(def->overflow_column, m) == 0;
		if (clash)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" of stream \"%s\" is both a metadata column and a payload column",
							m, def->name),
					 errhint("Map the %s metadata to a column of its own.", TribMetaFieldNames[f])));
	}
}

/* The target's only writable column, the default for text and bytes streams. */
static char *
TribOnlyWritableColumn(StreamDef *def)
{
	Relation	rel = table_open(def->target, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *found = NULL;
	int			count = 0;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		bool		is_meta = false;

		for (int f = 0; f < TRIB_META_COUNT; f++)
			is_meta |= def->meta_columns[f] != NULL &&
				strcmp(def->meta_columns[f], NameStr(att->attname)) == 0;
		if (att->attisdropped || att->attgenerated || is_meta)
			continue;
		count++;
		found = pstrdup(NameStr(att->attname));
	}
	table_close(rel, AccessShareLock);
	if (count != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream \"%s\" needs option \"column\"", def->name),
				 errdetail("Format %s puts the whole payload into one column, and table \"%s\" has %d writable columns.",
						   def->format->name, get_rel_name(def->target), count),
				 errhint("Add {\"column\": \"name\"} to the options.")));
	return found;
}

static const TribFormatRoutine *
TribParseFormat(StreamDef *def, JsonbValue *v)
{
	char	   *name = TribOptionString(def, "format", v);
	const TribFormatRoutine *format = TribFormatLookup(name);

	if (format == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown format \"%s\" for stream \"%s\"", name, def->name),
				 errhint("Use one of: %s.", TribFormatNameList())));
	return format;
}

static void
TribCheckColumnType(StreamDef *def, const char *column, const char *role, int ntypes,
					const Oid *types, const char *expected)
{
	Oid			type = get_atttype(def->target, get_attnum(def->target, column));

	for (int i = 0; i < ntypes; i++)
		if (type == types[i])
			return;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("column \"%s\" of relation \"%s\" has type %s", column,
					get_rel_name(def->target), format_type_be(type)),
			 errdetail("Stream \"%s\" uses it as its %s.", def->name, role),
			 errhint("The %s must be of type %s.", role, expected)));
}

/*
 * Validate def->options for def's source and target, and fill the resolved fields.
 * Raises an error on the first problem; changes nothing else. check_source runs the
 * source's own checks too (Kafka builds a librdkafka configuration): where options are
 * stored or a worker loads them, not for every ingest or replay call, which only need the
 * target's side checked again.
 */
void
TribStreamResolveOptions(StreamDef *def, bool check_source)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	val;
	JsonbIteratorToken tok;
	JsonbValue *format;

	TribCheckTarget(def->target);
	if (!JB_ROOT_IS_OBJECT(def->options) || JB_ROOT_IS_SCALAR(def->options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of stream \"%s\" must be a JSON object", def->name),
				 errhint("For example '{\"format\": \"json\"}'.")));

	def->format = TribFormatLookup("json");
	def->batch_size = def->source->default_batch_size > 0 ? def->source->default_batch_size : 1000;
	def->batch_ms = 100;
	def->parallelism = 1;
	def->csv_delimiter = ',';
	def->csv_columns = NIL;
	def->column = NULL;
	def->overflow_column = NULL;
	memset(def->meta_columns, 0, sizeof(def->meta_columns));

	format = getKeyJsonValueFromContainer(&def->options->root, "format", 6, NULL);
	if (format != NULL)
		def->format = TribParseFormat(def, format);

	it = JsonbIteratorInit(&def->options->root);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(key.val.string.val, key.val.string.len);
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		TribCheckOptionKnown(def, name);

		if (strcmp(name, "batch_size") == 0)
			def->batch_size = TribOptionInt(def, name, &val, 1, 1000000);
		else if (strcmp(name, "batch_ms") == 0)
			def->batch_ms = TribOptionInt(def, name, &val, 1, 3600 * 1000);
		else if (strcmp(name, "parallelism") == 0)
			def->parallelism = TribOptionInt(def, name, &val, 1, TRIBUTARY_MAX_PARALLELISM);
		else if (strcmp(name, "overflow") == 0)
			def->overflow_column = TribOptionString(def, name, &val);
		else if (strcmp(name, "columns") == 0)
			def->csv_columns = TribOptionColumns(def, &val);
		else if (strcmp(name, "column") == 0)
			def->column = TribOptionString(def, name, &val);
		else if (strcmp(name, "metadata") == 0)
			TribOptionMetadata(def, &val);
		else if (strcmp(name, "delimiter") == 0)
		{
			char	   *d = TribOptionString(def, name, &val);

			if (strlen(d) != 1 || d[0] == '"' || d[0] == '\n' || d[0] == '\r')
				TribBadOption(def, name, "one character other than a quote or a newline");
			def->csv_delimiter = d[0];
		}
		else if (strcmp(name, "format") != 0 && val.type == jbvNull)
			TribBadOption(def, name, "set, not null");
	}

	TribCheckRequiredOptions(def, def->source->options, def->source->name);
	if (check_source && def->source->validate != NULL)
		def->source->validate(def);
	TribCheckRequiredOptions(def, def->format->options, def->format->name);
	if (def->format->single_column && def->column == NULL)
		def->column = TribOnlyWritableColumn(def);
	TribCheckMetadataApart(def);
	if (def->column != NULL)
	{
		TribCheckColumn(def, def->column, "payload column");
		if (OidIsValid(def->format->single_column_type))
		{
			Oid			type = def->format->single_column_type;

			TribCheckColumnType(def, def->column, "payload column", 1, &type, format_type_be(type));
		}
	}
	if (def->overflow_column != NULL)
	{
		Oid			json_types[] = {JSONBOID, JSONOID};

		TribCheckColumn(def, def->overflow_column, "overflow column");
		TribCheckColumnType(def, def->overflow_column, "overflow column", 2, json_types,
							"jsonb or json");
	}
	if (def->key_column != NULL)
		TribCheckColumn(def, def->key_column, "key column");
	if (def->event_time_column != NULL)
	{
		Oid			time_types[] = {TIMESTAMPTZOID, TIMESTAMPOID};

		TribCheckColumn(def, def->event_time_column, "event time column");
		TribCheckColumnType(def, def->event_time_column, "event time column", 2, time_types,
							"timestamptz or timestamp");
	}
}
