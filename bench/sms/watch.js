// One measured SMS alert, for bench/sms/run.sh:
//   node watch.js SIRENAD_URL CAP_FILE IDENTIFIER WANT PROVIDER [--dlr] [NAME=PID ...]
// PROVIDER says where the messages arrive: sim:ADMIN_URL (sirena-sim sms, GET /stats
// "accepted") or fakesmsc:LOG_FILE (Kannel's fake SMSC, one "Got message" line each).
// NAME=PID: processes whose CPU time is reported (/proc/PID/stat). Posts the CAP alert, then watches the provider
// (every 10 ms) and the alert's progress.sms (every 20 ms) until WANT messages are
// accepted, and with --dlr until WANT delivery reports said "delivered" (or 600 s pass, or
// 3 s after the alert completed short of that, or 30 s without a new delivery report).
// Prints one JSON object; times are ms from the moment the POST was sent:
//   post_ms          the POST /v1/alerts round trip (202 = the alert is durable)
//   first_seen_ms    when the provider was first seen with a message (an upper bound)
//   provider_ms      when the provider had all WANT messages
//   accepted_ms      when progress.sms said accepted + delivered = WANT (sirenad's view)
//   dlr_ms           with --dlr: when progress.sms said delivered = WANT
//   cpu_provider     {NAME: CPU seconds from the POST to provider_ms}, plus "machine"
//   cpu_accepted     the same to accepted_ms
//   cpu_end          the same to the end (dlr_ms with --dlr, else accepted_ms)
// (run.sh reads sirenad's metrics around it: latency histograms, first message, requests.)
'use strict';
const fs = require('node:fs');
const { agent, HZ, request, json, sleep, procTicks } = require('../lib.js');

const args = process.argv.slice(2);
const [base, capFile, identifier, wantArg, provider] = args;
const want = Number(wantArg);
const waitDlr = args.includes('--dlr');
const pids = args.slice(5).filter((a) => a.includes('=')).map((a) => a.split('=')).map(([n, p]) => [n, Number(p)]);
const AUTH = { authorization: 'Bearer demo-soliera-operator' };
const DEADLINE_MS = 600e3;

const machineTicks = () => {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];  // all but idle and iowait
};
const cpuSample = () => {
  const s = { machine: machineTicks() };
  for (const [name, pid] of pids) s[name] = procTicks(pid);
  return s;
};
const cpuSince = (from) => {
  const now = cpuSample();
  return Object.fromEntries(Object.keys(from).map((k) => [k, (now[k] - from[k]) / HZ]));
};

// How many messages the provider has: the simulator's counter, or fakesmsc's log lines.
function providerCounter() {
  const [kind, ...rest] = provider.split(':');
  const where = rest.join(':');
  if (kind === 'sim') return async () => (await json(`${where}/stats`)).accepted;
  if (kind !== 'fakesmsc') throw new Error(`unknown provider ${provider}`);
  let offset = 0, count = 0, partial = '';
  const fd = fs.openSync(where, 'r');
  const chunk = Buffer.alloc(1 << 20);
  offset = fs.fstatSync(fd).size;  // only what arrives from now on
  return async () => {
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, offset);
      if (n <= 0) break;
      offset += n;
      const lines = (partial + chunk.toString('latin1', 0, n)).split('\n');
      partial = lines.pop();
      for (const l of lines) if (l.includes('Got message')) ++count;
    }
    return count;
  };
}

async function main() {
  const cap = fs.readFileSync(capFile, 'utf8').replace('IDENTIFIER', identifier);
  const count = providerCounter();
  const startCount = await count();
  const cpu0 = cpuSample();
  const t0 = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  const r = await request(`${base}/v1/alerts`, { method: 'POST', body: cap,
    headers: { ...AUTH, 'content-type': 'application/cap+xml' } });
  const out = { post_ms: since() };
  if (r.status !== 202) throw new Error(`POST /v1/alerts: ${r.status} ${r.body}`);
  const id = JSON.parse(r.body).id;
  out.id = id;

  let lastProvider = -1e9, lastAlert = -1e9, alert = null, lastDelivered = 0, lastDeliveredAt = 0;
  while (since() < DEADLINE_MS) {
    const now = since();
    // Back to back until the provider has the first message (for first_seen_ms), then every 10 ms.
    if (out.provider_ms === undefined && (out.first_seen_ms === undefined || now - lastProvider >= 10)) {
      lastProvider = now;
      const got = (await count()) - startCount;
      if (got > 0 && out.first_seen_ms === undefined) out.first_seen_ms = since();
      if (got >= want) {
        out.provider_ms = since();
        out.cpu_provider = cpuSince(cpu0);
      }
      out.provider_count = got;
    }
    if (now - lastAlert >= 20) {
      lastAlert = now;
      alert = await json(`${base}/v1/alerts/${id}`, { headers: AUTH });
      const sms = (alert.progress && alert.progress.sms) || {};
      if (out.accepted_ms === undefined && (sms.accepted || 0) + (sms.delivered || 0) >= want) {
        out.accepted_ms = since();
        out.cpu_accepted = cpuSince(cpu0);
      }
      if (waitDlr && out.dlr_ms === undefined && (sms.delivered || 0) >= want) out.dlr_ms = since();
      if (out.accepted_ms !== undefined && out.provider_ms !== undefined && (!waitDlr || out.dlr_ms !== undefined)) break;
      // A final alert that will not get there (messages failed): give the provider 3 s more.
      if (alert.state === 'completed' && out.completed_ms === undefined) out.completed_ms = since();
      if (out.accepted_ms === undefined && out.completed_ms !== undefined && since() - out.completed_ms > 3000) break;
      // Delivery reports that stopped coming: 30 s without one more.
      if ((sms.delivered || 0) !== lastDelivered) { lastDelivered = sms.delivered || 0; lastDeliveredAt = since(); }
      if (waitDlr && out.accepted_ms !== undefined && since() - lastDeliveredAt > 30000) break;
    }
    if (out.first_seen_ms !== undefined || !provider.startsWith('sim:')) await sleep(out.first_seen_ms === undefined ? 1 : 5);
  }
  out.cpu_end = cpuSince(cpu0);
  out.end_ms = since();
  out.state = alert && alert.state;
  out.progress = alert && alert.progress && alert.progress.sms;
  console.log(JSON.stringify(out));
  agent.destroy();
}

main().catch((e) => { console.error(`watch.js: ${e.stack || e}`); process.exit(1); });
