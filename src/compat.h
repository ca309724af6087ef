/*
 * compat.h
 *		The few places where PostgreSQL's internal API differs between the versions
 *		tributary supports (15, 16, 17). Built and tested on 15.
 */
#ifndef TRIBUTARY_COMPAT_H
#define TRIBUTARY_COMPAT_H

#include "postgres.h"

#include "catalog/pg_class.h"
#include "utils/acl.h"

#if PG_VERSION_NUM >= 160000
#define TribRelationOwnerCheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#else
#define TribRelationOwnerCheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#endif

/* JSON semantic callbacks return an error code from 16 on. */
#if PG_VERSION_NUM >= 160000
#define TRIB_JSON_CB_RETURN_TYPE JsonParseErrorType
#define TRIB_JSON_CB_RETURN return JSON_SUCCESS
#else
#define TRIB_JSON_CB_RETURN_TYPE void
#define TRIB_JSON_CB_RETURN return
#endif

#if PG_VERSION_NUM >= 170000
#define TribMakeJsonLexContext(json, len, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), GetDatabaseEncoding(), (need_escapes))
#else
#define TribMakeJsonLexContext(json, len, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), GetDatabaseEncoding(), (need_escapes))
#endif

/*
 * The executor calls of the insert loop (ingest.c, derived from copyfrom.c's CopyFrom):
 * 16 added the permission infos to the range table and the summarizing-only flag to index
 * insertion, and made the root-to-partition map lazily built.
 */
#if PG_VERSION_NUM >= 160000
#define TribExecInitRangeTable(estate, rtable) ExecInitRangeTable((estate), (rtable), NIL)
#define TribExecInsertIndexTuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#define TribRootToChildMap(rri, estate) ExecGetRootToChildMap((rri), (estate))
#else
#define TribExecInitRangeTable(estate, rtable) ExecInitRangeTable((estate), (rtable))
#define TribExecInsertIndexTuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#define TribRootToChildMap(rri, estate) ((rri)->ri_RootToPartitionMap)
#endif

/* PostgreSQL 17 asks whether a deferrable primary key will do; tributary's never is. */
#if PG_VERSION_NUM >= 170000
#define TribPrimaryKeyIndex(rel) RelationGetPrimaryKeyIndex((rel), false)
#else
#define TribPrimaryKeyIndex(rel) RelationGetPrimaryKeyIndex(rel)
#endif

#if PG_VERSION_NUM >= 170000
#define TribCheckValidInsertRel(rri) CheckValidResultRel((rri), CMD_INSERT, NIL)
#else
#define TribCheckValidInsertRel(rri) CheckValidResultRel((rri), CMD_INSERT)
#endif

#endif							/* TRIBUTARY_COMPAT_H */
