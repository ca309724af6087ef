/*
 * format.h
 *		Turns one message into one row of COPY text for the target table. Shared by every
 *		source: json, csv, text and bytes.
 *
 * A row is written as a line of COPY's text format (tab-separated, backslash-escaped,
 * \N for NULL) listing only the columns the message supplies; the others get their
 * defaults, exactly as an INSERT that names those columns. Rows that supply the same
 * columns share a "signature" and go into the same COPY. The text and bytes formats
 * leave their payload column's field empty: COPY gets that value from
 * TribFormatPayloadValue, made straight from the message.
 *
 * Parsing never raises an error for bad input: it returns false and fills the message's
 * result, so one bad message cannot stop a batch.
 */
#ifndef TRIBUTARY_FORMAT_H
#define TRIBUTARY_FORMAT_H

#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "utils/relcache.h"

#include "tributary.h"

typedef enum TribColumnClass
{
	TRIB_COL_SCALAR,			/* any type read with its input function */
	TRIB_COL_JSON,				/* json or jsonb: takes the JSON text of a value */
	TRIB_COL_ARRAY,				/* an array type: a JSON array becomes an array literal */
	TRIB_COL_JSON_ARRAY			/* json[] or jsonb[]: each element keeps its JSON text */
} TribColumnClass;

typedef struct TribColumn
{
	char	   *name;
	int			name_len;
	TribColumnClass cls;
	bool		writable;		/* not dropped, generated, or GENERATED ALWAYS AS IDENTITY */
	bool		is_meta;		/* receives message metadata, not payload */
	bool		is_bytea;
	bool		is_text;		/* of type text itself (not a domain): takes a text datum */
	Oid			typid;
	int32		typmod;
	int16		typlen;
	FmgrInfo   *infunc;			/* its input function, looked up on first use */
	Oid			typioparam;
} TribColumn;

/*
 * A value a format hands COPY directly, in place of its (empty) field in the COPY line:
 * json's and csv's values of TRIB_DIRECT_VALUE_BYTES and more for varlena columns (made
 * by the column's input function, as COPY would, or a text datum for text). Freed with
 * TribTargetForgetDirect.
 */
typedef struct TribDirectValue
{
	const TribMessage *msg;
	int			col;
	Datum		value;
	MemoryContext cxt;			/* holds the value */
} TribDirectValue;

/* json, csv: a value at least this large goes to COPY as a TribDirectValue */
#define TRIB_DIRECT_VALUE_BYTES (1024 * 1024)

struct TribTarget;

/*
 * A format is a routine struct, as PostgreSQL 18's CopyFromRoutine is: what the core needs
 * of a kind of message, filled by the format's own file and found by name in the one
 * registry (formats/registry.c). Nothing outside a format's file chooses behaviour by
 * comparing format names.
 */
typedef struct TribFormatRoutine
{
	const char *name;

	/* the format's own options, ended by {NULL} (the common ones are in options.c) */
	const TribOptionDecl *options;

	/* ingest may pass the payload as jsonb (it is written out as JSON text) */
	bool		takes_jsonb;

	/*
	 * The whole payload is one column's value ("column", or the target's only writable
	 * column), made by TribFormatPayloadValue; single_column_type is the type that column
	 * must have, or InvalidOid for any.
	 */
	bool		single_column;
	Oid			single_column_type;

	/* the payload is bytes: hex for COPY, no check of the database encoding */
	bool		binary;

	/* set up the target for this format (csv: its field map), or NULL */
	void		(*open) (struct TribTarget *t);

	/*
	 * Append the message's fields to its COPY line (in the target's column order, or the
	 * format's own with a field map) and set *signature when the format decides it; false,
	 * with res filled, when the message cannot be parsed. Never raises for bad input.
	 */
	bool		(*format) (struct TribTarget *t, const TribMessage *msg, StringInfo line,
						   int *signature, TribMessageResult *res);
} TribFormatRoutine;

extern const TribFormatRoutine *TribFormatLookup(const char *name);
extern const char *TribFormatNameList(void);

/* The target table as the formats see it, built once per batch. */
typedef struct TribTarget
{
	StreamDef  *def;
	Relation	rel;
	int			natts;
	TribColumn *cols;			/* by attnum - 1 */
	int			overflow;		/* json: index of the overflow column, or -1 */
	int			single;			/* text, bytes: index of the payload column */
	int			ncsv;
	int		   *csv_map;		/* csv: field number -> column index */
	List	   *signatures;		/* of Bitmapset: column sets seen in this batch */
	int			csv_signature;	/* csv, text, bytes: the one signature */
	bool		payload_value;	/* text, bytes: COPY takes the single column's value
								 * from TribFormatPayloadValue */
	int			meta_cols[TRIB_META_COUNT]; /* column index per metadata field, or -1 */
	struct TribJsonState *json; /* json parser scratch, reused across messages */
	List	   *direct;			/* of TribDirectValue, for the chunk being formatted */
} TribTarget;

extern TribTarget *TribTargetOpen(StreamDef *def, Relation rel);
extern int	TribTargetFindColumn(TribTarget *t, const char *name, int len);
extern int	TribTargetColumnIndex(TribTarget *t, const char *name);
extern int	TribTargetSignature(TribTarget *t, Bitmapset *columns);
extern List *TribTargetColumnNames(TribTarget *t, int signature);

/* Append one COPY line for the message; false (with res filled) when it cannot be parsed. */
extern bool TribFormatMessage(TribTarget *t, const TribMessage *msg, StringInfo line,
							  int *signature, TribMessageResult *res);

/* text, bytes: the payload column's value, given to COPY in place of its field (ingest.c) */
extern Datum TribFormatPayloadValue(TribTarget *t, const TribMessage *msg, FmgrInfo *infunc,
									Oid typioparam, int32 typmod);

/* helpers shared by the format modules */
extern void TribCopyAppendEscaped(StringInfo buf, const char *s, int len);
extern void TribFormatFail(TribMessageResult *res, int sqlerrcode, const char *error,
						   const char *detail);
extern void TribTargetForgetDirect(TribTarget *t, int keep);
extern bool TribFormatDirect(TribTarget *t, const TribMessage *msg, int col, char *text, int len,
							 bool owned);
extern bool TribCheckEncoding(const char *data, int len, TribMessageResult *res);

#endif							/* TRIBUTARY_FORMAT_H */
