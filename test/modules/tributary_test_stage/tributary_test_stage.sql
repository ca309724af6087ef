-- The tables tributary_test_stage records into, when they exist (in schema public). The
-- module checks their shape against its Anum_* constants; test/integration/TributaryTest.pm
-- runs this file for tests that ask for it (test_stage_tables).

-- One row per TribStageRow: which process and batch, the row's position in the batch,
-- its message, key, event time, source position (NULL when the source has none) and
-- the row as record_out prints it (compare with SELECT t::text FROM target t).
CREATE TABLE public.tributary_test_stage_seen (
	pid         int NOT NULL,
	batch       bigint NOT NULL,
	stream      text NOT NULL,
	rownum      int NOT NULL,
	msg         int NOT NULL,
	key         text,
	event_time  timestamptz,
	topic       text,
	"partition" int,
	"offset"    bigint,
	"row"       text NOT NULL
);

-- One row per batch: who ran the stage (current_user, and whether inside a
-- security-restricted operation), the batch's arrival time, its sizes and its dead
-- letters by reason.
CREATE TABLE public.tributary_test_stage_batches (
	pid            int NOT NULL,
	batch          bigint NOT NULL,
	stream         text NOT NULL,
	role           text NOT NULL,
	restricted     boolean NOT NULL,
	arrived        timestamptz NOT NULL,
	nmsgs          int NOT NULL,
	nrows          int NOT NULL,
	dead_too_large bigint NOT NULL,
	dead_malformed bigint NOT NULL,
	dead_bad_value bigint NOT NULL,
	dead_rejected  bigint NOT NULL
);
