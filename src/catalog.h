/*
 * catalog.h
 *		The stream catalog: loading a stream's definition, validating its options against
 *		its target table, and the privilege rules for managing streams.
 */
#ifndef TRIBUTARY_CATALOG_H
#define TRIBUTARY_CATALOG_H

#include "postgres.h"

#include "fmgr.h"

#include "tributary.h"

/* Saved identity while tributary acts as the extension's owner on its own tables. */
typedef struct TribOwnerContext
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nest_level;
} TribOwnerContext;

extern Oid	TribExtensionOwner(void);
extern Oid	TribCatalogRelid(void);
extern bool TribCatalogHasStates(void);
extern bool TribCatalogHasTextPositions(void);
extern void TribRequireCatalogStates(void);
extern void TribBecomeExtensionOwner(TribOwnerContext *ctx);
extern void TribRestoreUser(TribOwnerContext *ctx);

extern void TribCatalogExecute(const char *sql, int nargs, Oid *argtypes, Datum *values,
							   const char *nulls);

/* whether tributary.<table> (a settings table keyed by stream) has a row for stream */
extern bool TribSettingsHaveStream(const char *table, const char *stream);

/* dynahash hash and match for keys that are a char * (the string is hashed and compared) */
extern uint32 TribStringPtrHash(const void *key, Size keysize);
extern int	TribStringPtrMatch(const void *a, const void *b, Size keysize);

/* the most parameters a statement of TribSpiExecute takes */
#define TRIB_KEPT_PLAN_MAX_ARGS 32
extern int	TribSpiExecute(const char *sql, int nargs, Oid *argtypes, Datum *values,
						   const char *nulls, bool read_only, long count);

extern char *TribArgText(FunctionCallInfo fcinfo, int arg, const char *what);

extern ErrorData *TribRunInSubtransaction(void (*fn) (void *arg), void *arg);

typedef void (*TribStreamFn) (const char *stream, void *arg);
extern void TribForEachStream(const char *sql, TribStreamFn fn, void *arg, const char *what);

extern StreamDef *TribStreamLoad(const char *name, bool missing_ok, bool lock_row);
extern StreamDef *TribStreamLoadById(int32 id);
extern void TribStreamResolveOptions(StreamDef *def, bool check_source);

extern void TribCheckStreamName(const char *name);
extern bool TribIsAdmin(Oid userid);
extern bool TribRoleExists(Oid roleid);
extern const char *TribRoleName(Oid roleid);
extern void TribCheckMayManage(StreamDef *def, const char *action, bool target_owner_too);
extern void TribCheckTarget(Oid target);
extern void TribCheckInsertPrivilege(StreamDef *def, Oid userid);
extern void TribCheckMayInsert(StreamDef *def, Oid userid);
extern char *TribStreamUnrunnable(StreamDef *def);
extern void TribBecomeTableOwner(StreamDef *def, TribOwnerContext *ctx);

#endif							/* TRIBUTARY_CATALOG_H */
