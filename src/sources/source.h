/*
 * source.h
 *		A source is a routine struct, as FDWs and index access methods are: what the core
 *		needs of a kind of source, filled by the source's own file and found by name in the
 *		one registry (sources/registry.c). Nothing outside a source's file chooses behaviour
 *		by comparing source names.
 */
#ifndef TRIBUTARY_SOURCE_H
#define TRIBUTARY_SOURCE_H

#include "postgres.h"

#include "tributary.h"

/* An option of a source (tributary.h) */
typedef TribOptionDecl TribSourceOption;

typedef struct TribSourceRoutine
{
	const char *name;

	/* false: known by name but without a consumer yet; declaring or starting it is refused */
	bool		available;

	/* consumed by background workers that the launcher starts (every source but local) */
	bool		needs_worker;

	/* batch_size when the stream sets none (0: tributary's own default, 1000) */
	int			default_batch_size;

	/* the source's own options, ended by {NULL} */
	const TribSourceOption *options;

	/* check the source's options of def (after the common ones); raises on the first problem */
	void		(*validate) (StreamDef *def);

	/* whether roleid may store def's options, before validate passes them on; raises if not */
	void		(*check_rights) (StreamDef *def, Oid roleid);

	/* a worker's consume loop, as worker number index: returns when a reload is asked for */
	void		(*run) (StreamDef *def, int index);

	/*
	 * a dead letter's stored partition and position (text, either NULL) back into msg's
	 * numeric fields, so replay fills metadata columns as a worker does; raises when they
	 * are not the source's. NULL: the position stays text (TribMessage.position).
	 */
	void		(*restore_position) (StreamDef *def, TribMessage *msg, const char *partition,
									 const char *position);
} TribSourceRoutine;

extern const TribSourceRoutine *TribSourceLookup(const char *name);
extern const char *TribSourceNameList(void);

#endif							/* TRIBUTARY_SOURCE_H */
