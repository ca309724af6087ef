/*
 * tributary.c
 *		Module entry: _PG_init defines the GUCs, asks for shared memory, registers the
 *		transaction callbacks and the static launcher worker.
 *
 * tributary must be in shared_preload_libraries: its launcher and shared memory exist only
 * then, so loading it any other way is refused with an error that says how to fix it.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "launcher.h"
#include "ownership.h"
#include "shmem.h"
#include "tributary.h"
#include "quality/continuous.h"
#include "fanout/fanout.h"

PG_MODULE_MAGIC;

char	   *tributary_database = NULL;
int			tributary_max_workers = 8;
int			tributary_max_workers_per_role = -1;
int			tributary_max_streams = 64;
int			tributary_max_message_size = 64 * 1024 * 1024;
int			tributary_max_partitions = 1024;
int			tributary_naptime_ms = 10000;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

#if PG_VERSION_NUM >= 150000
static void
TribShmemRequestHook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	TribShmemRequest();
}
#endif

static void
TribShmemStartupHook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	TribShmemStartup();
}

/* GUCs are sorted by name; every one lives under the reserved tributary prefix. */
static void
TribDefineGucs(void)
{
	DefineCustomStringVariable("tributary.database",
							   "Database whose streams the launcher runs.",
							   "The extension must be created in this database.",
							   &tributary_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("tributary.max_message_size",
							"Largest message a stream stores; larger ones become dead letters.",
							"An accepted message costs a backend up to about three times its size.",
							&tributary_max_message_size,
							64 * 1024 * 1024, 1024, TRIB_MAX_MESSAGE_SIZE_LIMIT,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tributary.max_partitions",
							"Maximum number of broker partitions with live statistics in shared memory.",
							"Shared by all streams; one per stream, topic and partition.",
							&tributary_max_partitions,
							1024, 16, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tributary.max_streams",
							"Maximum number of streams with live statistics in shared memory.",
							NULL,
							&tributary_max_streams,
							64, 1, 100000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tributary.max_workers",
							"Maximum number of stream workers the launcher runs at once.",
							"Each worker also takes one of max_worker_processes.",
							&tributary_max_workers,
							8, 0, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tributary.max_workers_per_role",
							"Maximum number of stream workers the streams of one role may take.",
							"-1 means half of tributary.max_workers (at least 1). Streams of superusers are exempt.",
							&tributary_max_workers_per_role,
							-1, -1, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tributary.naptime",
							"How often the launcher re-reads the stream catalog without being woken.",
							"start, stop, alter_stream and drop_stream wake the launcher at once; this is the fallback.",
							&tributary_naptime_ms,
							10000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("tributary");
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tributary must be loaded via shared_preload_libraries"),
				 errdetail("Its launcher and shared memory can only be set up when the server starts."),
				 errhint("Add tributary to shared_preload_libraries in postgresql.conf and restart the server.")));

	TribDefineGucs();

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = TribShmemRequestHook;
#else
	TribShmemRequest();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = TribShmemStartupHook;

	TribShmemInitXactHooks();
	TribOwnershipInit();
	TribQualityInit();
	TribSnapshotInit();
	TribLauncherRegister();
}

const char *const TribMetaFieldNames[TRIB_META_COUNT] = {
	"topic", "partition", "offset", "key", "timestamp", "headers", "stream", "id"
};
