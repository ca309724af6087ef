#!/usr/bin/python3
"""Follow a tributary stream's snapshot with psycopg 3 (docs/fanout.md, "Client examples").

    follow.py STREAM CHANGES

Connects with libpq's environment variables (PGHOST, PGDATABASE, ...), LISTENs on the
stream's channel, hydrates from tributary.snapshot(), then applies notifications by their
seq. Prints one JSON line per event, and after CHANGES applied changes the state it holds.
"""
import json
import sys

import psycopg
from psycopg import sql

stream, wanted = sys.argv[1], int(sys.argv[2])
conn = psycopg.connect("", autocommit=True)
conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
received = []  # notifications that arrive while a query runs
conn.add_notify_handler(received.append)


def emit(**event):
    print(json.dumps(event), flush=True)


def hydrate():
    """The snapshot and the stream's seq, read in one REPEATABLE READ transaction."""
    with conn.transaction():
        seq = conn.execute("SELECT tributary.snapshot_seq(%s)", [stream]).fetchone()[0]
        rows = conn.execute("SELECT key, record FROM tributary.snapshot(%s)", [stream]).fetchall()
    emit(event="hydrate", seq=seq, keys=len(rows))
    return seq, dict(rows)


channel = conn.execute("SELECT tributary.fanout_channel(%s)", [stream]).fetchone()[0]
conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))  # LISTEN first
last, state = hydrate()
applied = 0


def apply(payload):
    global last, state, applied
    msg = json.loads(payload)
    if msg.get("resync"):
        last, state = hydrate()
    elif msg["seq"] <= last:
        pass  # already held
    elif msg["seq"] > last + 1 or msg.get("heartbeat") or "key" not in msg:
        last, state = hydrate()  # missed a change
    else:
        last = msg["seq"]
        if msg["op"] == "delete":
            state.pop(msg["key"], None)
        elif "record" in msg:
            state[msg["key"]] = msg["record"]
        else:  # too large for NOTIFY (or payload 'keys'): read it
            row = conn.execute("SELECT record FROM tributary.snapshot(%s, %s)",
                               [stream, msg["key"]]).fetchone()
            if row:
                state[msg["key"]] = row[0]
            else:
                state.pop(msg["key"], None)
        applied += 1
        emit(event=msg["op"], key=msg["key"], seq=msg["seq"])


def drain():
    while received and applied < wanted:
        apply(received.pop(0).payload)


drain()
if applied < wanted:
    for n in conn.notifies():  # waits; a query run meanwhile fills received
        received.append(n)
        drain()
        if applied >= wanted:
            break
emit(event="state", seq=last, keys=state)
