/*
 * api.c
 *		The SQL-callable functions: create_stream, alter_stream, start, stop, drop_stream,
 *		ingest (text, bytea, jsonb; one message or an array) and replay_dead_letters.
 *
 * Every function checks everything before it writes anything, so a bad call changes
 * nothing. Catalog writes run as the extension's owner (catalog.c); rows reach the target
 * table as the calling user, who needs INSERT on it. Lifecycle changes wake the launcher
 * when their transaction commits.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "batch.h"
#include "catalog.h"
#include "formats/format.h"
#include "deadletter.h"
#include "ingest.h"
#include "quality/continuous.h"
#include "shmem.h"
#include "sources/source.h"

PG_FUNCTION_INFO_V1(tributary_create_stream);
PG_FUNCTION_INFO_V1(tributary_alter_stream);
PG_FUNCTION_INFO_V1(tributary_start);
PG_FUNCTION_INFO_V1(tributary_stop);
PG_FUNCTION_INFO_V1(tributary_drop_stream);
PG_FUNCTION_INFO_V1(tributary_ingest);
PG_FUNCTION_INFO_V1(tributary_replay_dead_letters);
PG_FUNCTION_INFO_V1(tributary_alter_stream_owner);
PG_FUNCTION_INFO_V1(tributary_redact_options);

/* A text argument of a SQL function, which must not be null (what names it in the error). */
char *
TribArgText(FunctionCallInfo fcinfo, int arg, const char *what)
{
	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what),
				 errhint("Pass a value for %s.", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(arg));
}

/* The source called name; an unknown name is an error. */
static const TribSourceRoutine *
TribParseSource(const char *name)
{
	const TribSourceRoutine *source = TribSourceLookup(name);

	if (source == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown source \"%s\"", name),
				 errhint("Use one of: %s.", TribSourceNameList())));
	return source;
}

/*
 * A source that can be declared must consume: one without a consumer yet would idle as
 * "running" and look done. Refused until it exists (TribSourceRoutine.available).
 */
static void
TribCheckSourceAvailable(const TribSourceRoutine *source, const char *stream)
{
	if (!source->available)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("source \"%s\" is not available yet", source->name),
				 errdetail("Stream \"%s\" would never consume: this version of tributary has no consumer for source \"%s\".",
						   stream, source->name),
				 errhint("Use source \"kafka\", or \"local\" with tributary.ingest().")));
}

/* The source decides who may store which of its options (Kafka: librdkafka properties). */
static void
TribCheckOptionRights(StreamDef *def)
{
	if (def->source->check_rights != NULL)
		def->source->check_rights(def, GetUserId());
}

/*
 * Load a stream for a lifecycle change: locked, and only for those allowed to manage it
 * (with target_owner_too, the target table's owner as well: stop and drop).
 */
static StreamDef *
TribStreamForChange(const char *name, const char *function, const char *action, bool missing_ok,
					bool target_owner_too)
{
	StreamDef  *def;

	PreventCommandIfReadOnly(psprintf("tributary.%s", function));
	def = TribStreamLoad(name, missing_ok, true);
	if (def != NULL)
		TribCheckMayManage(def, action, target_owner_too);
	return def;
}

/*
 * create_stream(name, target, source, options, key, event_time, enabled)
 */
Datum
tributary_create_stream(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	char	   *source_name;
	StreamDef	def = {0};
	Oid			types[8] = {TEXTOID, OIDOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, BOOLOID, OIDOID};
	Datum		values[8];
	char		nulls[8] = "        ";

	TribCheckStreamName(name);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target must not be null"),
				 errhint("Pass the target table, for example 'public.events'::regclass.")));
	source_name = TribArgText(fcinfo, 2, "source");
	PreventCommandIfReadOnly("tributary.create_stream");
	def.source = TribParseSource(source_name);
	TribCheckSourceAvailable(def.source, name);

	def.name = name;
	def.target = PG_GETARG_OID(1);
	def.options = PG_ARGISNULL(3) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: PG_GETARG_JSONB_P(3);
	def.key_column = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	def.event_time_column = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	def.enabled = PG_ARGISNULL(6) ? true : PG_GETARG_BOOL(6);

	def.owner = GetUserId();
	/* any role may declare a stream into a table it may insert into; the stream is its own */
	TribCheckMayInsert(&def, def.owner);
	if (TribStreamLoad(name, true, false) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("stream \"%s\" already exists", name),
				 errhint("Choose another name, or change the existing stream with tributary.alter_stream().")));
	/* before the source's own checks see the options (TribStreamResolveOptions) */
	TribCheckOptionRights(&def);
	TribStreamResolveOptions(&def, true);

	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(def.target);
	values[2] = CStringGetTextDatum(source_name);
	values[3] = JsonbPGetDatum(def.options);
	values[4] = def.key_column ? CStringGetTextDatum(def.key_column) : (Datum) 0;
	nulls[4] = def.key_column ? ' ' : 'n';
	values[5] = def.event_time_column ? CStringGetTextDatum(def.event_time_column) : (Datum) 0;
	nulls[5] = def.event_time_column ? ' ' : 'n';
	values[6] = BoolGetDatum(def.enabled);
	values[7] = ObjectIdGetDatum(GetUserId());
	TribCatalogExecute("INSERT INTO tributary.stream_catalog "
					   "(name, target, source, options, key_column, event_time_column, enabled, owner) "
					   "VALUES ($1, $2::pg_catalog.regclass, $3, $4, $5, $6, $7, $8::pg_catalog.regrole)",
					   8, types, values, nulls);
	TribQualityForgetStream(name);
	TribWakeLauncherAtCommit();
	PG_RETURN_VOID();
}

/* old || changes, then without the top-level keys that changes sets to null. */
static Datum
TribMergeOptions(Jsonb *old, Jsonb *changes)
{
	Datum		merged = DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(old),
											 JsonbPGetDatum(changes));
	JsonbIterator *it = JsonbIteratorInit(&changes->root);
	JsonbValue	key;
	JsonbValue	val;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		if (val.type == jbvNull)
			merged = DirectFunctionCall2(jsonb_delete, merged,
										 PointerGetDatum(cstring_to_text_with_len(key.val.string.val,
																				  key.val.string.len)));
	}
	return merged;
}

/*
 * alter_stream(name, options): merge options into the stream's (a null value removes a
 * key), validate the result, and bump config_version so a running worker reloads.
 */
Datum
tributary_alter_stream(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	StreamDef  *def;
	Datum		merged;
	Oid			types[2] = {INT4OID, JSONBOID};
	Datum		values[2];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("options must not be null"),
				 errhint("Pass a JSON object with the options to change; a key set to null removes it.")));
	def = TribStreamForChange(name, "alter_stream", "alter", false, false);
	TribRequireCatalogStates();
	TribCheckSourceAvailable(def->source, name);
	if (!JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(1)) || JB_ROOT_IS_SCALAR(PG_GETARG_JSONB_P(1)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of stream \"%s\" must be a JSON object", name),
				 errhint("For example '{\"batch_size\": 500}'.")));
	merged = TribMergeOptions(def->options, PG_GETARG_JSONB_P(1));
	def->options = DatumGetJsonbP(merged);
	/* the merged options, before the source's own checks see them */
	TribCheckOptionRights(def);
	TribStreamResolveOptions(def, true);

	values[0] = Int32GetDatum(def->id);
	values[1] = merged;
	TribCatalogExecute("UPDATE tributary.stream_catalog SET options = $2, failed = false, "
					   "config_version = config_version + 1 WHERE id = $1",
					   2, types, values, NULL);
	TribWakeLauncherAtCommit();
	PG_RETURN_VOID();
}

static void
TribSetEnabled(FunctionCallInfo fcinfo, bool enabled)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	StreamDef  *def = TribStreamForChange(name, enabled ? "start" : "stop",
										   enabled ? "start" : "stop", false, !enabled);
	Oid			types[2] = {INT4OID, BOOLOID};
	Datum		values[2] = {Int32GetDatum(def->id), BoolGetDatum(enabled)};

	if (enabled)
	{
		TribRequireCatalogStates();
		TribCheckSourceAvailable(def->source, name);
		TribStreamResolveOptions(def, true);
	}
	TribCatalogExecute(enabled ?
					   "UPDATE tributary.stream_catalog SET enabled = $2, failed = false, "
					   "last_error = NULL, last_error_at = NULL WHERE id = $1" :
					   "UPDATE tributary.stream_catalog SET enabled = $2 WHERE id = $1",
					   2, types, values, NULL);
	TribWakeLauncherAtCommit();
}

Datum
tributary_start(PG_FUNCTION_ARGS)
{
	TribSetEnabled(fcinfo, true);
	PG_RETURN_VOID();
}

Datum
tributary_stop(PG_FUNCTION_ARGS)
{
	TribSetEnabled(fcinfo, false);
	PG_RETURN_VOID();
}

/* drop_stream(name, if_exists): removes the stream, its offsets and its dead letters. */
Datum
tributary_drop_stream(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	StreamDef  *def;
	Oid			types[1] = {INT4OID};
	Datum		values[1];

	/* its quality batches in flight first (TribQualityWaitForBatches), if it may be dropped */
	PreventCommandIfReadOnly("tributary.drop_stream");
	def = TribStreamLoad(name, true, false);
	if (def != NULL)
	{
		TribCheckMayManage(def, "drop", true);
		TribQualityWaitForBatches(name);
	}
	def = TribStreamForChange(name, "drop_stream", "drop", if_exists, true);

	if (def == NULL)
	{
		ereport(NOTICE,
				(errmsg("stream \"%s\" does not exist, skipping", name)));
		PG_RETURN_VOID();
	}
	values[0] = Int32GetDatum(def->id);
	TribCatalogExecute("DELETE FROM tributary.stream_catalog WHERE id = $1", 1, types, values, NULL);
	TribQualityForgetStream(def->name);
	TribStatsForgetAtCommit(&def->key);
	TribWakeLauncherAtCommit();
	PG_RETURN_VOID();
}

/* Which payload types a format takes: jsonb only makes sense for json. */
static void
TribCheckPayloadType(StreamDef *def, Oid type)
{
	if (type == TEXTOID || type == BYTEAOID)
		return;
	if (type == JSONBOID && def->format->takes_jsonb)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("stream \"%s\" with format %s cannot take a %s payload",
					def->name, def->format->name, format_type_be(type)),
			 errhint("Pass the payload as text or bytea%s.",
					 def->format->takes_jsonb ? " or jsonb" : "")));
}

/*
 * One payload datum as a message. Text and bytea bytes stay where they are, and the
 * varlena goes along so that neither the insert nor a dead letter copies it; jsonb is
 * written out once, as a varlena too.
 */
static void
TribPayloadToMessage(Datum payload, Oid type, TribMessage *msg)
{
	struct varlena *v;

	memset(msg, 0, sizeof(TribMessage));
	msg->timestamp_ms = -1;
	if (type == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(payload);
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoSpaces(&buf, VARHDRSZ);
		(void) JsonbToCString(&buf, &jb->root, VARSIZE(jb));
		v = (struct varlena *) buf.data;
		SET_VARSIZE(v, buf.len);
	}
	else
		v = PG_DETOAST_DATUM_PACKED(payload);
	msg->varlena = v;
	msg->data = VARDATA_ANY(v);
	msg->len = VARSIZE_ANY_EXHDR(v);
	msg->partition = -1;
	msg->offset = -1;
}

static Datum
TribIngestResult(FunctionCallInfo fcinfo, TribBatchCounts *counts)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "tributary: return type must be a row type");
	values[0] = Int64GetDatum(counts->messages - counts->dead);
	values[1] = Int64GetDatum(counts->dead);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

/*
 * The message keys of ingest(name, payloads[], keys[]), one per payload (NULL: none); a
 * null payload with a key is a tombstone.
 */
static void
TribIngestKeys(FunctionCallInfo fcinfo, TribMessage *msgs, int nmsgs, bool *payload_nulls)
{
	ArrayType  *arr;
	Datum	   *keys;
	bool	   *keynulls;
	int			nkeys;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("keys must not be null"),
				 errhint("Pass one key per payload (a null element for a message without a key), or call ingest without keys.")));
	arr = PG_GETARG_ARRAYTYPE_P(2);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &keys, &keynulls, &nkeys);
	if (nkeys != nmsgs)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ingest got %d payloads and %d keys", nmsgs, nkeys),
				 errhint("Pass one key per payload, a null element for a message without a key.")));
	for (int i = 0; i < nmsgs; i++)
	{
		if (payload_nulls[i] && keynulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("payload %d of the array is null and has no key", i + 1),
					 errdetail("A null payload with a key is a tombstone: it deletes the key from the stream's snapshot."),
					 errhint("Give the tombstone its key, or remove the element.")));
		if (payload_nulls[i])
		{
			memset(&msgs[i], 0, sizeof(TribMessage));
			msgs[i].data = "";
			msgs[i].timestamp_ms = -1;
			msgs[i].partition = -1;
			msgs[i].offset = -1;
			msgs[i].tombstone = true;
		}
		if (!keynulls[i])
		{
			text	   *key = DatumGetTextPP(keys[i]);

			msgs[i].key = VARDATA_ANY(key);
			msgs[i].key_len = VARSIZE_ANY_EXHDR(key);
		}
	}
}

/*
 * ingest(name, payload), ingest(name, payloads[]) and ingest(name, payloads[], keys[]):
 * push messages through the same path as a broker's, in the caller's transaction.
 * Returns (accepted, dead_lettered).
 */
Datum
tributary_ingest(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	Oid			elemtype = get_element_type(argtype);
	StreamDef  *def;
	TribMessage *msgs;
	TribMessageResult *results;
	TribBatchCounts counts;
	TribBatchRequest request = {0};
	int			nmsgs;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be null"),
				 errhint("A message needs a payload; send an empty string for an empty message.")));
	PreventCommandIfReadOnly("tributary.ingest");
	def = TribStreamLoad(name, false, false);
	if (!def->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" is stopped", name),
				 errhint("Start it with SELECT tributary.start('%s').", name)));
	TribStreamResolveOptions(def, false);
	TribCheckPayloadType(def, OidIsValid(elemtype) ? elemtype : argtype);

	if (OidIsValid(elemtype))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *elemnulls;
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
		deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &elemnulls, &nmsgs);
		if (PG_NARGS() < 3)
			for (int i = 0; i < nmsgs; i++)
				if (elemnulls[i])
					ereport(ERROR,
							(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							 errmsg("payload %d of the array is null", i + 1),
							 errhint("Remove null elements; send an empty string for an empty message, or pass keys to send tombstones.")));
		msgs = palloc(sizeof(TribMessage) * Max(nmsgs, 1));
		for (int i = 0; i < nmsgs; i++)
			if (!elemnulls[i])
				TribPayloadToMessage(elems[i], elemtype, &msgs[i]);
		if (PG_NARGS() >= 3)
			TribIngestKeys(fcinfo, msgs, nmsgs, elemnulls);
	}
	else
	{
		nmsgs = 1;
		msgs = palloc(sizeof(TribMessage));
		TribPayloadToMessage(PG_GETARG_DATUM(1), argtype, &msgs[0]);
	}

	results = palloc0(sizeof(TribMessageResult) * Max(nmsgs, 1));
	request.def = def;
	request.msgs = msgs;
	request.nmsgs = nmsgs;
	request.identity = TRIB_BATCH_AS_CALLER;
	request.write_dead_letters = true;
	request.count_stats = true;
	TribBatchCommit(&request, results, &counts);
	PG_RETURN_DATUM(TribIngestResult(fcinfo, &counts));
}

/* replay_dead_letters(name): retry the stream's dead letters; returns (accepted, dead_lettered). */
Datum
tributary_replay_dead_letters(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	StreamDef  *def = TribStreamForChange(name, "replay_dead_letters",
										   "replay dead letters of", false, false);
	TribBatchCounts counts;

	TribStreamResolveOptions(def, false);
	TribCheckMayInsert(def, GetUserId());
	TribDeadLettersReplay(def, &counts);
	if (counts.messages > 0)
		TribStatsAddAtCommit(&def->key, 0, counts.rows, 0, 0);
	PG_RETURN_DATUM(TribIngestResult(fcinfo, &counts));
}

/*
 * alter_stream_owner(name, new_owner): give a stream to another role (admins only), for
 * example before its owner's role is dropped. The new owner needs INSERT on the target.
 * A stream that failed because its owner was dropped runs again.
 */
Datum
tributary_alter_stream_owner(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "name");
	Oid			new_owner;
	StreamDef  *def;
	Oid			types[2] = {INT4OID, OIDOID};
	Datum		values[2];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("new_owner must not be null"),
				 errhint("Pass the role that is to own the stream.")));
	new_owner = PG_GETARG_OID(1);
	PreventCommandIfReadOnly("tributary.alter_stream_owner");
	if (!TribIsAdmin(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change the owner of stream \"%s\"", name),
				 errdetail("Only a superuser or a member of %s may give a stream to another role.",
						   TRIBUTARY_ADMIN_ROLE),
				 errhint("Ask an administrator.")));
	if (!TribRoleExists(new_owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", new_owner),
				 errhint("Pass an existing role.")));
	TribRequireCatalogStates();
	def = TribStreamLoad(name, false, true);
	TribCheckMayInsert(def, new_owner);
	values[0] = Int32GetDatum(def->id);
	values[1] = ObjectIdGetDatum(new_owner);
	TribCatalogExecute("UPDATE tributary.stream_catalog SET owner = $2::pg_catalog.regrole, "
					   "failed = false, config_version = config_version + 1 WHERE id = $1",
					   2, types, values, NULL);
	TribWakeLauncherAtCommit();
	PG_RETURN_VOID();
}

/*
 * _redact_options(options jsonb): the options as tributary.streams shows them to roles
 * that may not manage the stream, each source's secret options redacted by the source
 * (TribSourceRedactOptions).
 */
Datum
tributary_redact_options(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(TribSourceRedactOptions(PG_GETARG_JSONB_P(0)));
}
