/*
 * launcher.h
 *		The static background worker that keeps a started stream's workers running.
 */
#ifndef TRIBUTARY_LAUNCHER_H
#define TRIBUTARY_LAUNCHER_H

#include "postgres.h"

/* What a stream worker learns from the launcher through bgw_extra. */
typedef struct TribWorkerArgs
{
	Oid			database;
	Oid			role;			/* the extension's owner: the worker's session user */
	int32		index;			/* which of the stream's workers, from 0 to parallelism - 1 */
} TribWorkerArgs;

/* bgw_type of stream workers: pg_stat_activity.backend_type, and how shmem.c knows them */
#define TRIB_STREAM_WORKER_TYPE "tributary stream worker"

extern void TribLauncherRegister(void);
extern void TribPinSessionSettings(void);
extern PGDLLEXPORT void TribLauncherMain(Datum arg);
extern PGDLLEXPORT void TribStreamWorkerMain(Datum arg);

#endif							/* TRIBUTARY_LAUNCHER_H */
