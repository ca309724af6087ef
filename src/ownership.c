/*
 * ownership.c
 *		Keeps a stream's owner a real role. Streams live in tributary's own catalog table,
 *		so PostgreSQL's shared dependencies do not know them; a ProcessUtility hook gives
 *		them the behaviour of owned objects:
 *
 *		DROP ROLE r         refused while r owns streams in this database (with a hint)
 *		REASSIGN OWNED BY r TO s   r's streams here become s's (workers reload)
 *		DROP OWNED BY r     r's streams here are dropped, with their offsets and dead letters
 *
 * Like PostgreSQL's own REASSIGN OWNED and DROP OWNED, this acts in the current database
 * only. A role dropped from another database, where tributary cannot see the streams,
 * leaves them ownerless: their workers mark them failed (catalog.c, TribStreamUnrunnable)
 * and an administrator gives them a new owner with tributary.alter_stream_owner().
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "catalog.h"
#include "ownership.h"
#include "quality/continuous.h"
#include "shmem.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Whether tributary's catalog exists in this database (the extension is created). */
static bool
TribCatalogPresent(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("tributary", true)))
		return false;
	nsp = get_namespace_oid(TRIBUTARY_SCHEMA, true);
	return OidIsValid(nsp) && OidIsValid(get_relname_relid("stream_catalog", nsp));
}

/* The existing roles a statement names, as an oid[] datum; NULL when it names none. */
static Datum
TribRoleArray(List *rolespecs, int *nroles)
{
	Datum	   *oids = palloc(sizeof(Datum) * Max(list_length(rolespecs), 1));
	ListCell   *lc;

	*nroles = 0;
	foreach(lc, rolespecs)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			roleid = get_rolespec_oid(spec, true);

		if (OidIsValid(roleid))
			oids[(*nroles)++] = ObjectIdGetDatum(roleid);
	}
	return PointerGetDatum(construct_array(oids, *nroles, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/* Names of the streams owned by any of roles, comma-separated, or NULL. */
static char *
TribStreamsOwnedBy(Datum roles)
{
	TribOwnerContext owner;
	Oid			argtype = OIDARRAYOID;
	char	   *names = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	TribBecomeExtensionOwner(&owner);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "tributary: SPI_connect failed: %s", SPI_result_code_string(rc));
	rc = SPI_execute_with_args("SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) "
							   "FROM tributary.stream_catalog "
							   "WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1)",
							   1, &argtype, &roles, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "tributary: could not read the stream catalog: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v != NULL)
			names = MemoryContextStrdup(cxt, v);
	}
	if ((rc = SPI_finish()) != SPI_OK_FINISH)
		elog(ERROR, "tributary: SPI_finish failed: %s", SPI_result_code_string(rc));
	TribRestoreUser(&owner);
	return names;
}

/* DROP ROLE: refuse while a dropped role owns streams here, as for any owned object. */
static void
TribCheckDropRole(DropRoleStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->roles)
	{
		RoleSpec   *spec = lfirst(lc);
		int			n;
		Datum		roles = TribRoleArray(list_make1(spec), &n);
		char	   *streams = n > 0 ? TribStreamsOwnedBy(roles) : NULL;

		if (streams != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("role \"%s\" cannot be dropped because it owns tributary streams",
							get_rolespec_name(spec)),
					 errdetail("Owner of stream(s): %s.", streams),
					 errhint("Give them to another role with REASSIGN OWNED BY %s TO ... or tributary.alter_stream_owner(), or drop them with DROP OWNED BY %s or tributary.drop_stream().",
							 quote_identifier(get_rolespec_name(spec)),
							 quote_identifier(get_rolespec_name(spec)))));
	}
}

/* After REASSIGN OWNED: the roles' streams here belong to the new role. */
static void
TribReassignStreams(ReassignOwnedStmt *stmt)
{
	int			n;
	Datum		values[2];
	Oid			types[2] = {OIDARRAYOID, OIDOID};

	values[0] = TribRoleArray(stmt->roles, &n);
	if (n == 0 || TribStreamsOwnedBy(values[0]) == NULL)
		return;
	TribRequireCatalogStates();
	values[1] = ObjectIdGetDatum(get_rolespec_oid(stmt->newrole, false));
	TribCatalogExecute("UPDATE tributary.stream_catalog SET owner = $2::pg_catalog.regrole, "
					   "failed = false, config_version = config_version + 1 "
					   "WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1)",
					   2, types, values, NULL);
	TribWakeLauncherAtCommit();
}

/* After DROP OWNED: the roles' streams here are dropped like their other objects. */
static void
TribDropOwnedStreams(DropOwnedStmt *stmt)
{
	int			n;
	Datum		roles = TribRoleArray(stmt->roles, &n);
	Oid			argtype = OIDARRAYOID;
	TribOwnerContext owner;
	TribStreamKey key = {MyDatabaseId, InvalidOid, 0};
	MemoryContext outer = CurrentMemoryContext;
	List	   *names = NIL;
	ListCell   *lc;
	int			rc;

	if (n == 0 || TribStreamsOwnedBy(roles) == NULL)
		return;
	key.catalog = TribCatalogRelid();
	TribBecomeExtensionOwner(&owner);
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "tributary: SPI_connect failed: %s", SPI_result_code_string(rc));
	rc = SPI_execute_with_args("DELETE FROM tributary.stream_catalog "
							   "WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1) RETURNING id, name",
							   1, &argtype, &roles, NULL, false, 0);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "tributary: could not drop the streams of the dropped roles: %s",
			 SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		key.id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		TribStatsForgetAtCommit(&key);
		{
			/* the list and its names outlive SPI's memory */
			MemoryContext spi = MemoryContextSwitchTo(outer);

			names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
			MemoryContextSwitchTo(spi);
		}
	}
	if ((rc = SPI_finish()) != SPI_OK_FINISH)
		elog(ERROR, "tributary: SPI_finish failed: %s", SPI_result_code_string(rc));
	/* their quality windows too (those tables have no foreign keys) */
	foreach(lc, names)
		TribQualityForgetStream((const char *) lfirst(lc));
	TribRestoreUser(&owner);
	TribWakeLauncherAtCommit();
}

static void
TribProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		ours = (IsA(stmt, DropRoleStmt) || IsA(stmt, ReassignOwnedStmt) ||
						IsA(stmt, DropOwnedStmt)) && IsTransactionState() && TribCatalogPresent();

	if (ours && IsA(stmt, DropRoleStmt))
		TribCheckDropRole((DropRoleStmt *) stmt);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	/*
	 * the statement checked the caller's rights over the roles; follow it (unless it dropped
	 * the extension itself, owned by one of the roles, and the streams with it)
	 */
	if (ours && IsA(stmt, ReassignOwnedStmt))
		TribReassignStreams((ReassignOwnedStmt *) stmt);
	else if (ours && IsA(stmt, DropOwnedStmt) && TribCatalogPresent())
		TribDropOwnedStreams((DropOwnedStmt *) stmt);
}

void
TribOwnershipInit(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = TribProcessUtility;
}
