/*
 * catalog.c
 *		Loads streams from tributary.stream_catalog, validates their options against the
 *		target table, and holds the privilege rules.
 *
 * tributary's own tables belong to the extension's owner and are not writable by users.
 * Code that reads or writes them switches to that owner with a safe search_path
 * (TribBecomeExtensionOwner) for just those statements; rows go into a target table as
 * the calling user (ingest) or the stream's owner (workers), never as the extension owner.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "catalog_columns.h"
#include "compat.h"
#include "sources/source.h"

/*
 * The extension's owner: the role tributary acts as on its own tables. Read from
 * pg_extension (an index scan) and remembered for the rest of the command, in the same
 * subtransaction, only: the extension may have been re-created by another role, which this
 * transaction sees once it commits or, when this transaction did it, after a
 * CommandCounterIncrement, which starts a new command; a rollback to a savepoint undoes
 * what it saw in the subtransaction. (A stage switches to it and back several times per
 * batch.)
 */
static LocalTransactionId owner_lxid = InvalidLocalTransactionId;
static SubTransactionId owner_subxid;	/* ROLLBACK TO SAVEPOINT keeps the command id */
static CommandId owner_cid;
static Oid	owner_known;

Oid
TribExtensionOwner(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner;
	CommandId	cid = GetCurrentCommandId(false);
	SubTransactionId subxid = GetCurrentSubTransactionId();

	if (owner_lxid != InvalidLocalTransactionId && owner_lxid == MyProc->lxid &&
		owner_subxid == subxid && owner_cid == cid)
		return owner_known;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("tributary"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"tributary\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("Run CREATE EXTENSION tributary.")));
	owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	owner_lxid = MyProc->lxid;
	owner_subxid = subxid;
	owner_cid = cid;
	owner_known = owner;
	return owner;
}

/* OID of tributary.stream_catalog: part of every stream's key in shared memory. */
Oid
TribCatalogRelid(void)
{
	Oid			nsp = get_namespace_oid(TRIBUTARY_SCHEMA, false);

	return get_relname_relid("stream_catalog", nsp);
}

/*
 * Whether the catalog has the 0.3.0 columns "failed" and "waiting". After the library is
 * replaced and before ALTER EXTENSION UPDATE, workers and the launcher go on without them.
 */
bool
TribCatalogHasStates(void)
{
	return get_attnum(TribCatalogRelid(), "waiting") != InvalidAttrNumber;
}

/*
 * Whether tributary.offsets and tributary.dead_letters hold positions as text (0.3.0).
 * Before ALTER EXTENSION UPDATE they have 0.2.0's integer columns, which workers, ingest
 * and replay go on using (sources/kafka_positions.c, deadletter.c).
 */
bool
TribCatalogHasTextPositions(void)
{
	Oid			offsets = get_relname_relid("offsets", get_namespace_oid(TRIBUTARY_SCHEMA, false));

	return get_attnum(offsets, "position") != InvalidAttrNumber;
}

/* Functions that write the 0.3.0 columns refuse, with a hint, until the update. */
void
TribRequireCatalogStates(void)
{
	if (!TribCatalogHasStates())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension tributary must be updated before this function can run"),
				 errdetail("The library is newer than the extension's SQL objects in this database."),
				 errhint("Run ALTER EXTENSION tributary UPDATE.")));
}

/* Act as the extension's owner with search_path pinned, until TribRestoreUser. */
void
TribBecomeExtensionOwner(TribOwnerContext *ctx)
{
	Oid			owner = TribExtensionOwner();

	GetUserIdAndSecContext(&ctx->saved_userid, &ctx->saved_sec_context);
	SetUserIdAndSecContext(owner, ctx->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	ctx->guc_nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
TribRestoreUser(TribOwnerContext *ctx)
{
	AtEOXact_GUC(true, ctx->guc_nest_level);
	SetUserIdAndSecContext(ctx->saved_userid, ctx->saved_sec_context);
}

/* Stream names become channel and process names: keep them to plain lower-case identifiers. */
void
TribCheckStreamName(const char *name)
{
	bool		ok = name != NULL && name[0] != '\0' &&
		strlen(name) <= TRIBUTARY_MAX_NAME_LEN &&
		((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_');

	for (const char *p = name; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid stream name \"%s\"", name ? name : ""),
				 errdetail("A stream name is 1 to %d characters: lower-case letters, digits and underscores, not starting with a digit.",
						   TRIBUTARY_MAX_NAME_LEN),
				 errhint("Stream names appear in NOTIFY channels and process titles, so they are kept plain; for example \"orders_v2\".")));
}

/* Superusers and members of tributary_admin manage every stream and see every secret. */
bool
TribIsAdmin(Oid userid)
{
	Oid			admin = get_role_oid(TRIBUTARY_ADMIN_ROLE, true);

	return superuser_arg(userid) ||
		(OidIsValid(admin) && has_privs_of_role(userid, admin));
}

/* Whether a role still exists: a stream can outlive its owner's role (see ownership.c). */
bool
TribRoleExists(Oid roleid)
{
	return OidIsValid(roleid) && SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(roleid));
}

/* A role's name for messages, or its OID when it was dropped. */
const char *
TribRoleName(Oid roleid)
{
	char	   *name = GetUserNameFromId(roleid, true);

	return name != NULL ? quote_identifier(name) : psprintf("(dropped role %u)", roleid);
}

/* The owner of a table, or InvalidOid when the table is gone. */
static Oid
TribRelationOwner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Who manages a stream: its owner (or a member of the owner role), a superuser or a
 * tributary_admin member. With target_owner_too, the target table's owner as well: she
 * may stop and drop streams into her table, but not alter them or see their secrets.
 */
void
TribCheckMayManage(StreamDef *def, const char *action, bool target_owner_too)
{
	Oid			userid = GetUserId();
	Oid			relowner;

	if (TribIsAdmin(userid))
		return;
	if (TribRoleExists(def->owner) && has_privs_of_role(userid, def->owner))
		return;
	relowner = TribRelationOwner(def->target);
	if (target_owner_too && OidIsValid(relowner) && has_privs_of_role(userid, relowner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s stream \"%s\"", action, def->name),
			 errdetail(target_owner_too ?
					   "Only the stream's owner (or a member of its role), the owner of its target table, a superuser or a member of %s may %s it." :
					   "Only the stream's owner (or a member of its role), a superuser or a member of %s may %s it.",
					   TRIBUTARY_ADMIN_ROLE, action),
			 errhint("Ask the stream's owner, or have a superuser run GRANT %s TO %s.",
					 TRIBUTARY_ADMIN_ROLE, quote_identifier(GetUserNameFromId(userid, false)))));
}

/* A target must be an ordinary or partitioned table that outlives the session. */
void
TribCheckTarget(Oid target)
{
	char		relkind = get_rel_relkind(target);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("target table with OID %u does not exist", target),
				 errhint("Create the table first, or drop the stream with tributary.drop_stream().")));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(target)),
				 errdetail("A stream's target must be an ordinary or a partitioned table."),
				 errhint("Point the stream at a table; a view can read from it.")));
	if (get_rel_persistence(target) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a temporary table", get_rel_name(target)),
				 errdetail("A stream outlives the session; a temporary table does not, and workers cannot see it."),
				 errhint("Use an ordinary (or unlogged) table.")));
}

/*
 * Row-level security that would apply to userid's rows, checked as userid (an owner's
 * FORCE included). The insert loop, like COPY FROM, does not apply policies, so such a
 * target is refused.
 */
static bool
TribRlsApplies(Oid target, Oid userid)
{
	return check_enable_rls(target, userid, true) == RLS_ENABLED;
}

static void
TribCheckNoRls(Oid target, Oid userid)
{
	if (TribRlsApplies(target, userid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" has row-level security enabled for role %s",
						get_rel_name(target), TribRoleName(userid)),
				 errdetail("tributary's insert loop, like COPY FROM, does not apply row-level security policies."),
				 errhint("Use a target without row-level security, or a role that bypasses it.")));
}

/* The role that puts rows into the target needs INSERT on it. */
void
TribCheckInsertPrivilege(StreamDef *def, Oid userid)
{
	if (pg_class_aclcheck(def->target, userid, ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(def->target)),
				 errdetail("Role %s needs INSERT on the target of stream \"%s\".",
						   TribRoleName(userid), def->name),
				 errhint("GRANT INSERT ON %s TO %s.",
						 quote_identifier(get_rel_name(def->target)), TribRoleName(userid))));
}

/* The target is a table, the role may insert into it, and no RLS applies to its rows. */
void
TribCheckMayInsert(StreamDef *def, Oid userid)
{
	TribCheckTarget(def->target);
	TribCheckInsertPrivilege(def, userid);
	TribCheckNoRls(def->target, userid);
}

/*
 * Why a broker stream's worker cannot go on, whatever it retries: its source has no
 * consumer (a source that is not available), its target is gone or no longer a
 * table, its owner role was dropped, or row-level security now applies to its rows. NULL when none of these holds. The worker marks such a stream failed and
 * stops until it is altered, started or dropped.
 */
char *
TribStreamUnrunnable(StreamDef *def)
{
	char		relkind = get_rel_relkind(def->target);
	Oid			relowner;

	if (!def->source->available)
		return psprintf("source \"%s\" is not available yet: this version of tributary has no consumer for it",
						def->source->name);
	if (relkind == '\0')
		return psprintf("target table with OID %u does not exist", def->target);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return psprintf("\"%s\" is no longer a table", get_rel_name(def->target));
	if (!TribRoleExists(def->owner))
		return psprintf("the owner of stream \"%s\" (role %u) no longer exists", def->name, def->owner);
	relowner = TribRelationOwner(def->target);
	if (TribRlsApplies(def->target, def->owner) || TribRlsApplies(def->target, relowner))
		return psprintf("table \"%s\" has row-level security enabled for the stream's rows",
						get_rel_name(def->target));
	return NULL;
}

/*
 * Act as the target table's owner inside a security-restricted operation, as PostgreSQL
 * runs maintenance commands: a trigger, default or constraint of the table runs with its
 * owner's rights and cannot change roles or session state, whoever owns the stream.
 * Undone by TribRestoreUser.
 */
void
TribBecomeTableOwner(StreamDef *def, TribOwnerContext *ctx)
{
	Oid			relowner = TribRelationOwner(def->target);

	if (!OidIsValid(relowner))
		TribCheckTarget(def->target);	/* raises: the table is gone */
	GetUserIdAndSecContext(&ctx->saved_userid, &ctx->saved_sec_context);
	SetUserIdAndSecContext(relowner, ctx->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ctx->guc_nest_level = NewGUCNestLevel();
}

static char *
TribSpiText(int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? NULL : TextDatumGetCString(d);
}

/* Build a StreamDef from the one row in SPI_tuptable, in the given memory context. */
static StreamDef *
TribStreamFromSpi(MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	StreamDef  *def = palloc0(sizeof(StreamDef));
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	char	   *source;

	Assert(desc->natts == Natts_trib_stream);
	def->id = DatumGetInt32(SPI_getbinval(tup, desc, Anum_trib_stream_id, &isnull));
	def->key.database = MyDatabaseId;
	def->key.catalog = TribCatalogRelid();
	def->key.id = def->id;
	def->name = TribSpiText(Anum_trib_stream_name, &isnull);
	def->target = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_trib_stream_target, &isnull));
	source = TribSpiText(Anum_trib_stream_source, &isnull);
	def->source = TribSourceLookup(source);
	if (def->source == NULL)	/* the catalog's CHECK constraint names the sources */
		elog(ERROR, "tributary: stream \"%s\" has unknown source \"%s\"", def->name, source);
	def->options = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, Anum_trib_stream_options, &isnull));
	def->key_column = TribSpiText(Anum_trib_stream_key_column, &isnull);
	def->event_time_column = TribSpiText(Anum_trib_stream_event_time_column, &isnull);
	def->enabled = DatumGetBool(SPI_getbinval(tup, desc, Anum_trib_stream_enabled, &isnull));
	def->config_version = DatumGetInt32(SPI_getbinval(tup, desc, Anum_trib_stream_config_version,
													  &isnull));
	def->owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_trib_stream_owner, &isnull));
	MemoryContextSwitchTo(old);
	return def;
}

/* Run a one-row query of TRIB_STREAM_COLUMNS (catalog_columns.h) as the extension's owner. */
static StreamDef *
TribStreamQuery(const char *sql, Oid argtype, Datum arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	TribOwnerContext owner;
	StreamDef  *def = NULL;

	int			rc;

	TribBecomeExtensionOwner(&owner);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "tributary: SPI_connect failed: %s", SPI_result_code_string(rc));
	rc = TribSpiExecute(sql, 1, &argtype, &arg, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "tributary: reading the stream catalog failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
		def = TribStreamFromSpi(cxt);
	if ((rc = SPI_finish()) != SPI_OK_FINISH)
		elog(ERROR, "tributary: SPI_finish failed: %s", SPI_result_code_string(rc));
	TribRestoreUser(&owner);
	return def;
}

/*
 * Load a stream by name; lock_row takes FOR UPDATE so callers can change it safely.
 * Options are not resolved: callers that use them call TribStreamResolveOptions.
 */
StreamDef *
TribStreamLoad(const char *name, bool missing_ok, bool lock_row)
{
	StreamDef  *def;

	def = TribStreamQuery(lock_row ?
						  "SELECT " TRIB_STREAM_COLUMNS " FROM tributary.stream_catalog WHERE name = $1 FOR UPDATE" :
						  "SELECT " TRIB_STREAM_COLUMNS " FROM tributary.stream_catalog WHERE name = $1",
						  TEXTOID, CStringGetTextDatum(name));
	if (def == NULL && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name),
				 errhint("See SELECT name FROM tributary.streams for the declared streams.")));
	return def;
}

/* Load a stream by id (workers); NULL when it no longer exists. */
StreamDef *
TribStreamLoadById(int32 id)
{
	return TribStreamQuery("SELECT " TRIB_STREAM_COLUMNS " FROM tributary.stream_catalog WHERE id = $1",
						   INT4OID, Int32GetDatum(id));
}

/*
 * Run fn(arg) in a subtransaction of its own. Returns NULL when it succeeded; otherwise the
 * subtransaction is rolled back (which also restores the user and security context it
 * started with) and its error is returned, in the caller's memory context.
 */
ErrorData *
TribRunInSubtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/* One stream of TribForEachStream. */
typedef struct TribStreamCall
{
	TribStreamFn fn;
	const char *stream;
	void	   *arg;
} TribStreamCall;

static void
TribStreamCallRun(void *arg)
{
	TribStreamCall *call = arg;

	call->fn(call->stream, call->arg);
}

/*
 * For the launcher's ticks: the stream names sql returns (SPI connected, as the extension's
 * owner), then fn(name, arg) for each, in a subtransaction of its own, so that one stream's
 * error (logged as a WARNING naming what was done) does not stop the others'. The names and
 * what fn allocates live in the caller's memory context.
 */
void
TribForEachStream(const char *sql, TribStreamFn fn, void *arg, const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *streams = NIL;
	ListCell   *lc;

	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "tributary: could not list the streams to %s", what);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		streams = lappend(streams, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	foreach(lc, streams)
	{
		TribStreamCall call = {fn, lfirst(lc), arg};
		ErrorData  *edata = TribRunInSubtransaction(TribStreamCallRun, &call);

		if (edata != NULL)
		{
			ereport(WARNING,
					(errmsg("tributary: could not %s of stream \"%s\": %s", what, call.stream,
							edata->message)));
			FreeErrorData(edata);
		}
	}
}

/*
 * Run one of tributary's own statements (SPI connected) through a plan prepared on its
 * first use in this process and kept: the plans, keyed by the statement's text, live as
 * long as the process (PostgreSQL re-plans a kept plan when a table it reads changes, and
 * analyzes it again when the table was dropped and made anew). For the statements every
 * batch runs (positions, settings, the quality windows): parsing and planning them again
 * each time was some 15 % of a stream worker's time at 200 small batches a second. Only
 * for texts from a fixed set: values go in as parameters, never into the text.
 *
 * The plans are generic (CURSOR_OPT_GENERIC_PLAN): the plan cache would otherwise plan
 * statements anew for every execution whenever their parameters' values make a custom plan
 * look cheaper (the quality fold's pane ranges did, every batch: 12 % of a backend ingesting
 * batches of 100 rows). Every statement here looks rows up by an indexed key (the stream,
 * then a pane, a window, an id), for which the generic plan is the index scan.
 */
typedef struct TribKeptPlan
{
	const char *sql;			/* hash key: a copy of the text, in TopMemoryContext */
	int			nargs;
	Oid			argtypes[TRIB_KEPT_PLAN_MAX_ARGS];
	SPIPlanPtr	plan;
} TribKeptPlan;

static HTAB *kept_plans = NULL;

/*
 * dynahash callbacks for tables whose key is a pointer to a NUL-terminated string (keysize
 * sizeof(char *)): the string's bytes are hashed and compared, not the pointer.
 */
uint32
TribStringPtrHash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

int
TribStringPtrMatch(const void *a, const void *b, Size keysize)
{
	const char *x = *(const char *const *) a;
	const char *y = *(const char *const *) b;

	/* callers often share one string among many entries (a batch's key texts) */
	return x == y ? 0 : strcmp(x, y);
}

int
TribSpiExecute(const char *sql, int nargs, Oid *argtypes, Datum *values, const char *nulls,
			   bool read_only, long count)
{
	TribKeptPlan *kp;
	bool		found;

	if (nargs > TRIB_KEPT_PLAN_MAX_ARGS)
		elog(ERROR, "tributary: %d parameters, at most %d: %s", nargs, TRIB_KEPT_PLAN_MAX_ARGS, sql);
	if (kept_plans == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(char *);
		ctl.entrysize = sizeof(TribKeptPlan);
		ctl.hash = TribStringPtrHash;
		ctl.match = TribStringPtrMatch;
		ctl.hcxt = TopMemoryContext;
		kept_plans = hash_create("tributary kept plans", 64, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}
	kp = hash_search(kept_plans, &sql, HASH_FIND, &found);
	if (kp == NULL || kp->nargs != nargs ||
		(nargs > 0 && memcmp(kp->argtypes, argtypes, sizeof(Oid) * nargs) != 0))
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "tributary: could not prepare (%s): %s", SPI_result_code_string(SPI_result), sql);
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "tributary: could not keep the plan of: %s", sql);
		if (kp == NULL)
		{
			const char *key = MemoryContextStrdup(TopMemoryContext, sql);

			kp = hash_search(kept_plans, &key, HASH_ENTER, &found);
		}
		else
			SPI_freeplan(kp->plan);
		kp->nargs = nargs;
		if (nargs > 0)
			memcpy(kp->argtypes, argtypes, sizeof(Oid) * nargs);
		kp->plan = plan;
	}
	return SPI_execute_plan(kp->plan, values, nulls, read_only, count);
}

/* Run one statement on tributary's own tables as the extension's owner. */
void
TribCatalogExecute(const char *sql, int nargs, Oid *argtypes, Datum *values, const char *nulls)
{
	TribOwnerContext owner;
	int			rc;

	TribBecomeExtensionOwner(&owner);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "tributary: SPI_connect failed: %s", SPI_result_code_string(rc));
	rc = TribSpiExecute(sql, nargs, argtypes, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "tributary: catalog statement failed: %s", SPI_result_code_string(rc));
	if ((rc = SPI_finish()) != SPI_OK_FINISH)
		elog(ERROR, "tributary: SPI_finish failed: %s", SPI_result_code_string(rc));
	TribRestoreUser(&owner);
}

/*
 * Whether tributary.<table>, a settings table whose primary key is its stream column, has
 * a row for stream, as "SELECT 1 FROM tributary.<table> WHERE stream = $1" would find it
 * (the transaction's snapshot after its own changes), by one descent of the primary key:
 * the stages ask it for every batch, and SPI's set-up was most of the question's cost.
 * False when the table is not there (a catalog before ALTER EXTENSION UPDATE). Reads the
 * table as the system does its catalogs, without privilege checks: callers only learn
 * whether a stream has a stage.
 */
bool
TribSettingsHaveStream(const char *table, const char *stream)
{
	Oid			nsp = get_namespace_oid(TRIBUTARY_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(table, nsp) : InvalidOid;
	Relation	rel;
	AttrNumber	att;
	ScanKeyData key;
	SysScanDesc scan;
	Snapshot	snapshot;
	bool		found;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	att = get_attnum(relid, "stream");
	if (att == InvalidAttrNumber)
		elog(ERROR, "tributary.%s has no stream column", table);
	ScanKeyEntryInitialize(&key, 0, att, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(RelationGetDescr(rel), att - 1)->attcollation,
						   F_TEXTEQ, CStringGetTextDatum(stream));
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	scan = systable_beginscan(rel, TribPrimaryKeyIndex(rel), true, snapshot, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return found;
}
