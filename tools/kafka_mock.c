/*
 * tools/kafka_mock.c: tributary-kafka-mock, a local Kafka "broker" for tests and the demo.
 *
 * It is librdkafka's in-process mock cluster (rdkafka_mock.h, public but experimental
 * API) exposed as a standalone program: N brokers listening on 127.0.0.1 (random ports,
 * picked by the kernel), topics created up front or at run time, and fault controls
 * (broker down/up, added round-trip latency) driven through a FIFO, so that tests can use
 * real, unmodified clients (kcat, the tributary worker) against it.
 *
 *   tributary-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--control FIFO_PATH]
 *
 * On start it prints exactly one line "bootstrap=HOST:PORT[,HOST:PORT...]" on stdout, then
 * runs until SIGTERM, SIGINT or SIGHUP and exits 0, noting the signal and its sender on
 * stderr. It also stops (as on SIGTERM) when its parent process dies, so a test runner
 * killed hard leaves no broker behind; start it from a process that outlives its use.
 *
 * Control protocol: with --control, FIFO_PATH is created (mkfifo) if missing and read as
 * newline-separated commands; writers may come and go one after the other.
 *
 *   down BROKER_ID            close the broker's connections and its listener: clients
 *                             see "connection refused"
 *   up BROKER_ID              listen again, on the same port
 *   rtt BROKER_ID MS          add MS milliseconds of latency to the broker's responses
 *   topic NAME PARTITIONS     create a topic
 *   topic-error NAME ERROR    answer metadata requests for topic NAME with the Kafka error
 *                             ERROR, named as librdkafka names it without its prefix
 *                             (UNKNOWN_TOPIC_OR_PART: the topic does not exist, or was
 *                             deleted; TOPIC_AUTHORIZATION_FAILED; ...); NO_ERROR clears it
 *
 * Partition P of every topic is led by broker (P mod N) + 1 (the mock alone would pick
 * leaders at random), so a test knows which partitions a "down" affects. Leaders never
 * move: a partition whose leader is down is unavailable until it is up again.
 *
 * BROKER_ID is 1..N, or -1 for all brokers. Each command is answered on stdout by one
 * line, "ok <command>" or "error <command>: <reason>", where <command> is the line as
 * read with surrounding blanks removed. Empty lines and lines starting with '#' are
 * ignored without an answer.
 *
 * Limits of the librdkafka 2.0.2 mock: about 5 MiB of log per partition (older messages
 * drop off and the log start offset moves), no CreateTopics admin API (hence the "topic"
 * command), no ports chosen by the caller, no persistence.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define PROG "tributary-kafka-mock"
#define MAX_LINE 1024
#define MAX_BROKERS 64

typedef struct TopicSpec
{
	const char *name;
	int partitions;
} TopicSpec;

typedef struct MockState
{
	rd_kafka_t *rk;						/* handle the mock cluster is attached to */
	rd_kafka_mock_cluster_t *mcluster;
	int brokers;
	const char *control_path;
	int control_rfd;					/* read end of the control FIFO, or -1 */
	int control_wfd;					/* our own write end: keeps the FIFO from hitting EOF */
	char line[MAX_LINE + 1];			/* partial command line read so far */
	size_t line_len;
	int line_overflow;					/* current line is longer than MAX_LINE */
	int created_fifo;					/* we made the FIFO, so we remove it at exit */
} MockState;

/* Print an error to stderr and exit non-zero: used for setup failures only. */
static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Usage text on the given stream, so --help goes to stdout and mistakes to stderr. */
static void
usage(FILE *out)
{
	fprintf(out,
			"usage: " PROG " [--brokers N] [--topic NAME:PARTITIONS]... [--control FIFO_PATH]\n"
			"\n"
			"Runs a librdkafka mock Kafka cluster on 127.0.0.1, prints\n"
			"\"bootstrap=HOST:PORT[,...]\" on stdout and runs until SIGTERM or SIGINT.\n"
			"\n"
			"  --brokers N               number of brokers, ids 1..N (default 1)\n"
			"  --topic NAME:PARTITIONS   create a topic (repeatable)\n"
			"  --control FIFO_PATH       read commands from this FIFO (created if missing):\n"
			"                              down ID | up ID | rtt ID MS | topic NAME PARTITIONS |\n"
			"                              topic-error NAME ERROR\n"
			"                            each answered on stdout by \"ok <cmd>\" or\n"
			"                            \"error <cmd>: <reason>\"\n");
}

/* Strict decimal integer parse in [min, max]; atoi would accept "3x" or "". */
static int
parse_int(const char *s, long min, long max, int *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return 0;
	*out = (int) v;
	return 1;
}

/* Kafka's own rule for topic names, checked here because the mock accepts anything. */
static int
valid_topic_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 249 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	for (const char *p = name; *p; p++)
	{
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* Replication factor for new topics: 1 broker gives 1, more give up to 3 replicas. */
static int
replication_factor(const MockState *st)
{
	return st->brokers < 3 ? st->brokers : 3;
}

/* librdkafka log lines go to stderr with our prefix, so they are told apart from ours. */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void) rk;
	fprintf(stderr, PROG ": librdkafka %d %s: %s\n", level, fac, buf);
}

/* Create the client handle that owns the mock cluster, then the cluster itself. */
static void
start_cluster(MockState *st)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	rd_kafka_conf_set_log_cb(conf, log_cb);
	/*
	 * This handle is never used as a client (it only does the mock's bookkeeping), so
	 * keep it quiet: warnings such as "no bootstrap.servers configured" would only confuse.
	 */
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "client.id", PROG, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		die("librdkafka configuration: %s", errstr);

	st->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (st->rk == NULL)
		die("cannot create librdkafka handle: %s", errstr);

	st->mcluster = rd_kafka_mock_cluster_new(st->rk, st->brokers);
	if (st->mcluster == NULL)
		die("cannot create a mock cluster of %d broker(s) (see librdkafka messages above)",
			st->brokers);
}

/* Create one topic; returns NULL on success or a static/librdkafka reason on failure. */
static const char *
create_topic(MockState *st, const char *name, int partitions)
{
	rd_kafka_resp_err_t err;

	if (!valid_topic_name(name))
		return "invalid topic name (allowed: 1-249 of [a-zA-Z0-9._-])";
	err = rd_kafka_mock_topic_create(st->mcluster, name, partitions, replication_factor(st));
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return rd_kafka_err2str(err);
	/*
	 * The mock picks leaders at random; tests need to know which broker a fault hits. With
	 * one broker there is nothing to pick (and each call can cost the mock thread a wakeup).
	 */
	for (int p = 0; p < partitions && st->brokers > 1; p++)
	{
		err = rd_kafka_mock_partition_set_leader(st->mcluster, name, p, p % st->brokers + 1);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			return rd_kafka_err2str(err);
	}
	return NULL;
}

/* A Kafka error by librdkafka's name without "RD_KAFKA_RESP_ERR_"; false when unknown. */
static bool
parse_error_name(const char *name, rd_kafka_resp_err_t *err)
{
	const struct rd_kafka_err_desc *descs;
	size_t		n;

	rd_kafka_get_err_descs(&descs, &n);
	for (size_t i = 0; i < n; i++)
		if (descs[i].name != NULL && strcmp(descs[i].name, name) == 0)
		{
			*err = descs[i].code;
			return true;
		}
	return false;
}

/* Write one answer line and flush at once: tests wait for it. */
static void
reply(const char *cmd, const char *reason)
{
	if (reason == NULL)
		printf("ok %s\n", cmd);
	else
		printf("error %s: %s\n", cmd, reason);
	fflush(stdout);
}

/* Parse a broker id argument: 1..N, or -1 meaning every broker. */
static const char *
parse_broker_id(const MockState *st, const char *s, int *id)
{
	if (!parse_int(s, -1, INT_MAX, id) || *id == 0 || (*id > st->brokers))
	{
		static char msg[128];

		snprintf(msg, sizeof(msg), "broker id must be 1..%d or -1 (all)", st->brokers);
		return msg;
	}
	return NULL;
}

/* Apply one control command and answer it; cmd is a trimmed, non-empty line. */
static void
run_command(MockState *st, const char *cmd)
{
	char buf[MAX_LINE + 1];
	char *argv[4] = {NULL, NULL, NULL, NULL};
	int argc = 0;
	char *save = NULL;
	const char *reason = NULL;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	int id, n;

	snprintf(buf, sizeof(buf), "%s", cmd);
	for (char *tok = strtok_r(buf, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save))
	{
		if (argc == 4)
		{
			reply(cmd, "too many arguments");
			return;
		}
		argv[argc++] = tok;
	}
	if (argc == 0)
		return;

	if (strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0)
	{
		if (argc != 2)
			reason = "usage: down|up BROKER_ID";
		else if ((reason = parse_broker_id(st, argv[1], &id)) == NULL)
			err = argv[0][0] == 'd' ? rd_kafka_mock_broker_set_down(st->mcluster, id)
									: rd_kafka_mock_broker_set_up(st->mcluster, id);
	}
	else if (strcmp(argv[0], "rtt") == 0)
	{
		if (argc != 3)
			reason = "usage: rtt BROKER_ID MS";
		else if ((reason = parse_broker_id(st, argv[1], &id)) == NULL)
		{
			if (!parse_int(argv[2], 0, 3600 * 1000, &n))
				reason = "MS must be an integer in 0..3600000";
			else
				err = rd_kafka_mock_broker_set_rtt(st->mcluster, id, n);
		}
	}
	else if (strcmp(argv[0], "topic") == 0)
	{
		if (argc != 3)
			reason = "usage: topic NAME PARTITIONS";
		else if (!parse_int(argv[2], 1, 100000, &n))
			reason = "PARTITIONS must be an integer in 1..100000";
		else
			reason = create_topic(st, argv[1], n);
	}
	else if (strcmp(argv[0], "topic-error") == 0)
	{
		rd_kafka_resp_err_t topic_err;

		if (argc != 3)
			reason = "usage: topic-error NAME ERROR";
		else if (!valid_topic_name(argv[1]))
			reason = "invalid topic name (allowed: 1-249 of [a-zA-Z0-9._-])";
		else if (!parse_error_name(argv[2], &topic_err))
			reason = "unknown error name (librdkafka's, without RD_KAFKA_RESP_ERR_: UNKNOWN_TOPIC_OR_PART, NO_ERROR, ...)";
		else
			rd_kafka_mock_topic_set_error(st->mcluster, argv[1], topic_err);
	}
	else
		reason = "unknown command (down ID | up ID | rtt ID MS | topic NAME PARTITIONS | topic-error NAME ERROR)";

	if (reason == NULL && err != RD_KAFKA_RESP_ERR_NO_ERROR)
		reason = rd_kafka_err2str(err);
	reply(cmd, reason);
}

/* Handle one raw line from the FIFO: trim it, skip blanks and comments, run the rest. */
static void
handle_line(MockState *st, char *line)
{
	char *end;

	while (*line == ' ' || *line == '\t')
		line++;
	end = line + strlen(line);
	while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	if (*line == '\0' || *line == '#')
		return;
	run_command(st, line);
}

/*
 * Open the FIFO for reading without blocking, plus a write end of our own: with a writer
 * always present, a test's writer closing never produces EOF (and no POLLHUP busy loop),
 * so one writer after another just works.
 */
static void
open_control(MockState *st)
{
	struct stat sb;

	if (stat(st->control_path, &sb) == 0)
	{
		if (!S_ISFIFO(sb.st_mode))
			die("--control %s: exists and is not a FIFO", st->control_path);
	}
	else if (errno != ENOENT)
		die("--control %s: %s", st->control_path, strerror(errno));
	else if (mkfifo(st->control_path, 0600) != 0)
		die("--control %s: mkfifo: %s", st->control_path, strerror(errno));
	else
		st->created_fifo = 1;

	st->control_rfd = open(st->control_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (st->control_rfd < 0)
		die("--control %s: open for reading: %s", st->control_path, strerror(errno));
	st->control_wfd = open(st->control_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (st->control_wfd < 0)
		die("--control %s: open for writing: %s", st->control_path, strerror(errno));
	st->line_len = 0;
	st->line_overflow = 0;
}

/* Drain what the FIFO has now, running each complete line; reopens on EOF just in case. */
static void
read_control(MockState *st)
{
	char chunk[4096];

	for (;;)
	{
		ssize_t n = read(st->control_rfd, chunk, sizeof(chunk));

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			die("--control %s: read: %s", st->control_path, strerror(errno));
		}
		if (n == 0)
		{
			/* Cannot happen while we hold a write end; recover anyway. */
			close(st->control_rfd);
			close(st->control_wfd);
			open_control(st);
			return;
		}
		for (ssize_t i = 0; i < n; i++)
		{
			char c = chunk[i];

			if (c == '\n')
			{
				st->line[st->line_len] = '\0';
				if (st->line_overflow)
				{
					printf("error %.40s...: line longer than %d bytes\n", st->line, MAX_LINE);
					fflush(stdout);
				}
				else
					handle_line(st, st->line);
				st->line_len = 0;
				st->line_overflow = 0;
			}
			else if (st->line_len < MAX_LINE)
				st->line[st->line_len++] = c;
			else
				st->line_overflow = 1;
		}
	}
}

/* Parse the command line into st and the topic list; exits on any mistake. */
static TopicSpec *
parse_args(int argc, char **argv, MockState *st, int *ntopics)
{
	TopicSpec *topics = calloc((size_t) argc, sizeof(TopicSpec));

	if (topics == NULL)
		die("out of memory");
	*ntopics = 0;
	st->brokers = 1;
	st->control_path = NULL;

	for (int i = 1; i < argc; i++)
	{
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
		{
			usage(stdout);
			exit(0);
		}
		if (strcmp(arg, "--brokers") != 0 && strcmp(arg, "--topic") != 0 &&
			strcmp(arg, "--control") != 0)
		{
			usage(stderr);
			die("unknown argument \"%s\"", arg);
		}
		if (val == NULL)
			die("%s needs a value", arg);
		i++;

		if (strcmp(arg, "--brokers") == 0)
		{
			if (!parse_int(val, 1, MAX_BROKERS, &st->brokers))
				die("--brokers \"%s\": must be an integer in 1..%d", val, MAX_BROKERS);
		}
		else if (strcmp(arg, "--control") == 0)
		{
			if (*val == '\0')
				die("--control needs a path");
			st->control_path = val;
		}
		else
		{
			/* NAME:PARTITIONS; topic names cannot contain ':', so split at the last one. */
			const char *colon = strrchr(val, ':');
			TopicSpec *t = &topics[*ntopics];
			char *name;

			if (colon == NULL)
				die("--topic \"%s\": expected NAME:PARTITIONS", val);
			name = strndup(val, (size_t) (colon - val));
			if (name == NULL)
				die("out of memory");
			if (!valid_topic_name(name))
				die("--topic \"%s\": invalid topic name (allowed: 1-249 of [a-zA-Z0-9._-])",
					val);
			if (!parse_int(colon + 1, 1, 100000, &t->partitions))
				die("--topic \"%s\": PARTITIONS must be an integer in 1..100000", val);
			t->name = name;
			(*ntopics)++;
		}
	}
	return topics;
}

/*
 * Block the stop signals before librdkafka starts its threads (they inherit the mask),
 * so only our signalfd sees them; SIGPIPE is ignored so a closed stdout is an error return,
 * not a silent death.
 */
static int
setup_signals(void)
{
	sigset_t mask;
	int fd;
	pid_t parent = getppid();

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		die("sigprocmask: %s", strerror(errno));
	fd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (fd < 0)
		die("signalfd: %s", strerror(errno));
	/* Parent gone (e.g. a test runner killed with -9): stop like on SIGTERM. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
		die("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
	if (getppid() != parent)
		die("parent process already exited");
	return fd;
}

/* Wait for signals and control commands until a stop signal arrives. */
static void
main_loop(MockState *st, int sigfd)
{
	for (;;)
	{
		struct pollfd pfd[2];
		int nfds = 1;

		pfd[0].fd = sigfd;
		pfd[0].events = POLLIN;
		if (st->control_rfd >= 0)
		{
			pfd[1].fd = st->control_rfd;
			pfd[1].events = POLLIN;
			nfds = 2;
		}
		if (poll(pfd, (nfds_t) nfds, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pfd[0].revents & POLLIN)
		{
			struct signalfd_siginfo si;

			if (read(sigfd, &si, sizeof(si)) == (ssize_t) sizeof(si))
			{
				/* Say who stopped us: an unexpected stop in a test is then easy to explain. */
				fprintf(stderr, PROG ": %s from pid %u, stopping\n", strsignal((int) si.ssi_signo),
						si.ssi_pid);
				return;
			}
		}
		if (nfds == 2 && (pfd[1].revents & (POLLIN | POLLHUP)))
			read_control(st);
	}
}

/* Set up, announce the bootstrap address, serve until told to stop, tear down cleanly. */
int
main(int argc, char **argv)
{
	MockState st;
	TopicSpec *topics;
	int ntopics;
	int sigfd;

	memset(&st, 0, sizeof(st));
	st.control_rfd = st.control_wfd = -1;
	topics = parse_args(argc, argv, &st, &ntopics);
	sigfd = setup_signals();
	if (st.control_path != NULL)
		open_control(&st);

	start_cluster(&st);
	for (int i = 0; i < ntopics; i++)
	{
		const char *reason = create_topic(&st, topics[i].name, topics[i].partitions);

		if (reason != NULL)
			die("--topic %s:%d: %s", topics[i].name, topics[i].partitions, reason);
	}

	printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(st.mcluster));
	if (fflush(stdout) != 0)
		die("cannot write to stdout: %s", strerror(errno));

	main_loop(&st, sigfd);

	rd_kafka_mock_cluster_destroy(st.mcluster);
	rd_kafka_destroy(st.rk);
	if (st.control_rfd >= 0)
	{
		close(st.control_rfd);
		close(st.control_wfd);
		if (st.created_fifo)
			unlink(st.control_path);
	}
	for (int i = 0; i < ntopics; i++)
		free((char *) topics[i].name);
	free(topics);
	return 0;
}
