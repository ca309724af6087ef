/*
 * format.h
 *		Turns one message into one typed row of the target table: json, csv, text, bytes.
 *
 * A format fills a row's values straight from the message (TribRowSet* below): each value
 * goes through its column's input function, or is built directly for text, json, bytea
 * and metadata columns of their natural types. A row lists only the columns the message
 * supplies (TribRow.given); the insert (ingest.c) gives the others their defaults, as an
 * INSERT naming those columns would.
 *
 * Parsing never raises an error for bad input: the format returns false and fills the
 * message's result, so one bad message cannot stop a batch. A column's input function
 * may raise (on 15; on 16 and later its soft errors come back as false); the insert path
 * contains that in a subtransaction and blames the column in TribTarget.cur_col.
 */
#ifndef TRIBUTARY_FORMAT_H
#define TRIBUTARY_FORMAT_H

#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/relcache.h"

#include "tributary.h"

typedef enum TribColumnClass
{
	TRIB_COL_SCALAR,			/* any type read with its input function */
	TRIB_COL_JSON,				/* json or jsonb: takes the JSON text of a value */
	TRIB_COL_ARRAY,				/* an array type: a JSON array becomes an array literal */
	TRIB_COL_JSON_ARRAY			/* json[] or jsonb[]: each element keeps its JSON text */
} TribColumnClass;

/* How a column's value is made from text. */
typedef enum TribColumnConversion
{
	TRIB_CONV_INPUT,			/* the type's input function, with the column's typmod */
	TRIB_CONV_TEXT,				/* type text: the characters as they are */
	TRIB_CONV_JSON,				/* type json: text the json format has already parsed */
	TRIB_CONV_INT4,				/* integer, bigint, double precision, timestamp, */
	TRIB_CONV_INT8,				/* timestamptz (typmod -1): their commonest shapes */
	TRIB_CONV_FLOAT8,			/* directly (convert.h), others through the input */
	TRIB_CONV_TIMESTAMP,		/* function */
	TRIB_CONV_TIMESTAMPTZ
} TribColumnConversion;

typedef struct TribColumn
{
	char	   *name;
	int			name_len;
	TribColumnClass cls;
	TribColumnConversion conv;
	bool		writable;		/* not dropped, generated, or GENERATED ALWAYS AS IDENTITY */
	bool		is_meta;		/* receives message metadata, not payload */
	Oid			typid;
	Oid			basetypid;		/* the type under any domain */
	int32		typmod;
	FmgrInfo	infunc;			/* its input function (writable columns) */
	Oid			typioparam;
} TribColumn;

/* One message's row: the values of the columns it supplies. */
typedef struct TribRow
{
	int			msg;			/* index of the message in the batch */
	Datum	   *values;			/* by column index */
	bool	   *nulls;
	bool	   *given;			/* the message supplies this column */
} TribRow;

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
	 * column), made by TribRowSetPayload; single_column_type is the type that column must
	 * have, or InvalidOid for any.
	 */
	bool		single_column;
	Oid			single_column_type;

	/* the payload is bytes: no check of the database encoding */
	bool		binary;

	/* set up the target for this format (csv: its field map), or NULL */
	void		(*open) (struct TribTarget *t);

	/*
	 * Fill the row's values from the message; false, with res filled, when the message
	 * cannot be read or (16+) a value is refused. Never raises for bad input.
	 */
	bool		(*format) (struct TribTarget *t, const TribMessage *msg, TribRow *row,
						   TribMessageResult *res);
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
	bool	   *always_given;	/* columns every message supplies (payload map, metadata) */
	int			meta_cols[TRIB_META_COUNT]; /* column index per metadata field, or -1 */
	struct TribJsonState *json; /* json parser scratch, reused across messages */
	StringInfoData scratch;		/* a value's text, NUL-terminated for its input function */
	MemoryContext value_cxt;	/* scratch for converting one large value */
	int			cur_col;		/* the column being converted, for an error's detail; or -1 */
} TribTarget;

extern TribTarget *TribTargetOpen(StreamDef *def, Relation rel);
extern int	TribTargetFindColumn(TribTarget *t, const char *name, int len);
extern int	TribTargetColumnIndex(TribTarget *t, const char *name);

/* Fill the row for the message, metadata included; false (with res filled) when it cannot. */
extern bool TribFormatMessage(TribTarget *t, const TribMessage *msg, TribRow *row,
							  TribMessageResult *res);

/* Setting a row's values (formats). TribRowSetText's flags: */
#define TRIB_TEXT_TERMINATED	0x01	/* text[len] is a NUL the input function may rely on */
#define TRIB_TEXT_PARSED_JSON	0x02	/* text is one JSON value the json format parsed */

extern bool TribRowSetText(TribTarget *t, TribRow *row, int col, const char *text, int len,
						   int flags, TribMessageResult *res);
extern void TribRowSetNull(TribTarget *t, TribRow *row, int col);
extern void TribRowSetDatum(TribTarget *t, TribRow *row, int col, Datum value);
extern bool TribRowSetPayload(TribTarget *t, const TribMessage *msg, TribRow *row,
							  TribMessageResult *res);

/* len bytes as a JSON string, appended */
extern void TribAppendJsonString(StringInfo buf, const char *s, size_t len);

/* a message's JSON text: data, or made from its pairs (an object of strings) */
extern const char *TribMessageJson(const TribMessage *msg, int *len);

/* helpers shared by the format modules */
extern void TribFormatFail(TribMessageResult *res, int sqlerrcode, const char *error,
						   const char *detail);
extern bool TribCheckEncoding(const char *data, int len, TribMessageResult *res);

/* a value at least this large is converted in a context of its own, then copied out */
#define TRIB_LARGE_VALUE_BYTES (1024 * 1024)

#endif							/* TRIBUTARY_FORMAT_H */
