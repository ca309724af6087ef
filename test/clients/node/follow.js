// Follow a tributary stream's snapshot with node-postgres (docs/fanout.md, "Client examples").
//
//     node follow.js STREAM CHANGES
//
// Connects with libpq's environment variables (PGHOST, PGDATABASE, ...), LISTENs on the
// stream's channel, hydrates from tributary.snapshot(), then applies notifications by their
// seq. Prints one JSON line per event, and after CHANGES applied changes the state it holds.
'use strict';
const { Client } = require('pg');

const [stream, wanted] = [process.argv[2], Number(process.argv[3])];
const client = new Client();
let last = 0;
let state = new Map();
let applied = 0;
let work = Promise.resolve(); // notifications are handled one after the other

const emit = (event) => console.log(JSON.stringify(event));

// The snapshot and the stream's seq, read in one REPEATABLE READ transaction.
async function hydrate() {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const seq = await client.query('SELECT tributary.snapshot_seq($1) AS seq', [stream]);
  const rows = await client.query('SELECT key, record FROM tributary.snapshot($1)', [stream]);
  await client.query('COMMIT');
  last = Number(seq.rows[0].seq);
  state = new Map(rows.rows.map((r) => [r.key, r.record]));
  emit({ event: 'hydrate', seq: last, keys: state.size });
}

async function apply(payload) {
  const msg = JSON.parse(payload);
  if (msg.resync) return hydrate();
  if (msg.seq <= last) return; // already held
  if (msg.seq > last + 1 || msg.heartbeat || msg.key === undefined) return hydrate(); // missed a change
  last = msg.seq;
  if (msg.op === 'delete') {
    state.delete(msg.key);
  } else if ('record' in msg) {
    state.set(msg.key, msg.record);
  } else {
    // too large for NOTIFY (or payload 'keys'): read it
    const r = await client.query('SELECT record FROM tributary.snapshot($1, $2)', [stream, msg.key]);
    if (r.rows.length) state.set(msg.key, r.rows[0].record);
    else state.delete(msg.key);
  }
  applied += 1;
  emit({ event: msg.op, key: msg.key, seq: msg.seq });
  if (applied === wanted) {
    emit({ event: 'state', seq: last, keys: Object.fromEntries(state) });
    await client.end();
  }
}

async function start() {
  const ch = await client.query('SELECT tributary.fanout_channel($1) AS channel', [stream]);
  await client.query('LISTEN ' + client.escapeIdentifier(ch.rows[0].channel)); // LISTEN first
  await hydrate();
}

async function main() {
  await client.connect();
  client.on('notification', (n) => {
    work = work.then(() => (applied < wanted ? apply(n.payload) : undefined));
  });
  work = work.then(start); // notifications that arrive meanwhile wait for the hydration
  await work;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
