/*
 * continuous_internal.h
 *		What the files of continuous quality windows share (continuous.c: the stage and
 *		the wall clock; settings.c: reading the settings and the fold lock; fold.c: the
 *		fold and the closed windows; alerts.c: alerts and their handlers; stream_sql.c:
 *		set_quality and the other SQL functions). The protocol is in continuous.c's header.
 */
#ifndef TRIBUTARY_QUALITY_CONTINUOUS_INTERNAL_H
#define TRIBUTARY_QUALITY_CONTINUOUS_INTERNAL_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/jsonb.h"

#include "quality/window.h"

/* the fold lock's tag: an advisory-style lock tributary alone takes (field 4) */
#define TRIB_QUALITY_LOCK_KIND 0x5451
/* windows one fold closes at most (the rest close at the next) */
#define TRIB_QUALITY_CLOSE_MAX 10000
#define TRIB_ALERT_CHANNEL "tributary.alerts"

/* A stream's quality settings and progress, as quality_config holds them. */
typedef struct TribQualityConfig
{
	char	   *stream;
	int32		stream_id;
	Oid			owner;
	Interval   *window_iv;
	Interval   *slide_iv;
	int64		window;
	int64		slide;
	int64		lateness;
	int64		grace;
	TimestampTz origin;
	int			ncols;
	char	  **columns;
	Jsonb	   *thresholds;
	double		weights[TRIB_QC_COUNT];
	Oid			on_alert;
	char	   *key_column;		/* NULL: the stream's */
	bool		has_newest;
	TimestampTz newest_event;
	bool		has_arrival;
	TimestampTz last_arrival;
	bool		has_closed;
	TimestampTz closed_until;	/* windows that start before it are closed */
	bool		alerting;
} TribQualityConfig;

/* An alert whose on_alert handler runs once tributary's own writes are done. */
typedef struct TribPendingAlert
{
	char	   *stream;
	Oid			owner;
	Oid			handler;
	int64		id;
	char	   *payload;
} TribPendingAlert;

/* Alerts whose handlers are to run, in the memory of whoever asked for the fold. */
typedef struct TribPendingList
{
	List	   *alerts;
	MemoryContext cxt;
} TribPendingList;

/* One partial as the fold reads it. */
typedef struct TribQualityPartial
{
	TimestampTz pane;
	bool		folded;
	TribQualityWindow *state;
} TribQualityPartial;

/*
 * A batch's partials not stored yet: the stage of a batch that folds in its own
 * transaction hands them to the fold, which merges them as it merges stored ones and
 * stores only those whose panes an open window still covers.
 */
typedef struct TribQualityUnstored
{
	TribQualityPartial *parts;	/* none folded */
	int			n;
	TimestampTz arrived;		/* the batch's arrival */
} TribQualityUnstored;


/* SPI statements: connected, as the extension's owner (settings.c) */
extern int64 TribIntervalUsecs(Interval *iv);
extern bool TribQualityJsonbNumber(Jsonb *obj, const char *key, const char *what, double *out);
extern void TribQualitySpi(const char *sql, int nargs, Oid *types, Datum *values,
						   const char *nulls, int expect);
extern TribQualityConfig *TribQualityConfigLoad(const char *stream, bool lock, MemoryContext cxt);
extern bool TribQualityLock(int32 stream_id, LOCKMODE mode, bool wait);

/* fold.c */
extern void TribQualityWindowStore(TribQualityConfig *cfg, TimestampTz start,
								   const TribQualityWindow *w, TimestampTz closed_at,
								   int revision, TribQualityWindowMetrics *m);
extern TribQualityWindow *TribQualityEmptyWindow(TribQualityConfig *cfg, const bool *numeric,
												 MemoryContext cxt);
extern TribQualityPartial *TribQualityReadPartials(TribQualityConfig *cfg, TimestampTz bound,
												   int *n, MemoryContext cxt);
extern bool *TribQualityNumericFlags(TribQualityConfig *cfg, Oid target);
extern void TribQualityStorePartial(TribQualityConfig *cfg, TimestampTz pane,
									const TribQualityWindow *w, TimestampTz arrived, bool folded);
extern int	TribQualityFold(TribQualityConfig *cfg, Oid target, TimestampTz now,
							const TribQualityUnstored *mine, TribPendingList *pending);

/* alerts.c */
extern void TribQualityEpisode(TribQualityConfig *cfg, TimestampTz start,
							   const TribQualityWindow *w, const TribQualityWindowMetrics *m,
							   TimestampTz closed_at, TribPendingList *pending);
extern void TribQualityRunHandlers(List *pending);

/* continuous.c */
extern bool TribQualityCatalogPresent(void);
extern int	TribQualityFoldStream(const char *stream, bool wait, TribPendingList *pending);

#endif							/* TRIBUTARY_QUALITY_CONTINUOUS_INTERNAL_H */
