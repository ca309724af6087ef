/*
 * fanout_listen.c: the C listener of bench/fanout_latency.sh (LISTENER=c).
 *
 * Opens COUNT connections, LISTENs on tributary.fan on each, writes OUT.ready, then for
 * SECONDS takes every notification as it arrives (poll() over the sockets, libpq's
 * PQconsumeInput and PQnotifies) and records its latency: the time it was taken minus the
 * "ts" its record carries (microseconds since the epoch, stamped by the producer). At the
 * end it writes the latencies, sorted, space-separated, in microseconds, to OUT. It does
 * as little as a listener can per notification, so that what is measured is the server's
 * delivery rather than the listener's own work.
 *
 * Usage: fanout_listen CONNINFO COUNT SECONDS OUT
 * Built by the benchmark (cc ... -lpq); not part of the extension.
 */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
cmp_int64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	const char *conninfo;
	int			count;
	double		seconds;
	const char *out;
	PGconn	  **conns;
	struct pollfd *fds;
	int64_t    *lat = NULL;
	size_t		nlat = 0;
	size_t		cap = 0;
	int64_t		deadline;
	char		ready[4096];
	FILE	   *f;

	if (argc != 5)
	{
		fprintf(stderr, "usage: %s CONNINFO COUNT SECONDS OUT\n", argv[0]);
		return 2;
	}
	conninfo = argv[1];
	count = atoi(argv[2]);
	seconds = atof(argv[3]);
	out = argv[4];
	conns = calloc(count, sizeof(PGconn *));
	fds = calloc(count, sizeof(struct pollfd));
	for (int i = 0; i < count; i++)
	{
		PGresult   *res;

		conns[i] = PQconnectdb(conninfo);
		if (PQstatus(conns[i]) != CONNECTION_OK)
		{
			fprintf(stderr, "fanout_listen: %s", PQerrorMessage(conns[i]));
			return 1;
		}
		res = PQexec(conns[i], "LISTEN \"tributary.fan\"");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "fanout_listen: LISTEN: %s", PQerrorMessage(conns[i]));
			return 1;
		}
		PQclear(res);
		fds[i].fd = PQsocket(conns[i]);
		fds[i].events = POLLIN;
	}
	snprintf(ready, sizeof(ready), "%s.ready", out);
	if ((f = fopen(ready, "w")) == NULL)
	{
		perror(ready);
		return 1;
	}
	fclose(f);

	deadline = now_us() + (int64_t) (seconds * 1e6);
	while (now_us() < deadline)
	{
		if (poll(fds, count, 200) <= 0)
			continue;
		for (int i = 0; i < count; i++)
		{
			PGnotify   *n;

			if (!(fds[i].revents & POLLIN))
				continue;
			if (!PQconsumeInput(conns[i]))
			{
				fprintf(stderr, "fanout_listen: %s", PQerrorMessage(conns[i]));
				return 1;
			}
			while ((n = PQnotifies(conns[i])) != NULL)
			{
				int64_t		t = now_us();
				const char *ts = strstr(n->extra, "\"ts\": ");

				if (ts != NULL)
				{
					if (nlat == cap)
					{
						cap = cap ? cap * 2 : 1 << 16;
						lat = realloc(lat, cap * sizeof(int64_t));
						if (lat == NULL)
							return 1;
					}
					lat[nlat++] = t - strtoll(ts + 6, NULL, 10);
				}
				PQfreemem(n);
			}
		}
	}
	qsort(lat, nlat, sizeof(int64_t), cmp_int64);
	if ((f = fopen(out, "w")) == NULL)
	{
		perror(out);
		return 1;
	}
	for (size_t i = 0; i < nlat; i++)
		fprintf(f, i ? " %lld" : "%lld", (long long) lat[i]);
	fclose(f);
	for (int i = 0; i < count; i++)
		PQfinish(conns[i]);
	return 0;
}
