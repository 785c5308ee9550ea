// A Node APNs client sending the benchmark's notifications, for bench/fanout/run.sh:
//   node peer.js apns2|node-apn COUNT ALERT_ID KEY_FILE PORT [CONNECTIONS] [WINDOW]
// Sends COUNT notifications (the first COUNT APNs tokens of gen.js, the payload and headers
// sirenad sends) to https://127.0.0.1:PORT with at most WINDOW of them unanswered, and prints
// one JSON object: sent, ok, failed, first error, first_ms (first answer), seconds (start of
// the client to the last answer), cpu_s, maxrss_kb. The simulator's certificate is self-signed:
// run with NODE_TLS_REJECT_UNAUTHORIZED=0.
//
// Settings: apns2 12.2 has no knobs but `host` (an undici Pool of up to 32 HTTP/2 connections
// to port 443, 100 streams each); it connects to port 443 only. @parse/node-apn's
// MultiProvider spreads requests over `clientCount` HTTP/2 sessions (CONNECTIONS).
'use strict';
const fs = require('node:fs');
const { apnsToken, apnsIndex, payload } = require('./gen.js');

const [which, countArg, alertId, keyFile, portArg, connArg, windowArg] = process.argv.slice(2);
const count = Number(countArg), port = Number(portArg);
const connections = Number(connArg || 2), windowSize = Number(windowArg || 2000);
const TOPIC = 'it.comune.soliera.app', KEY_ID = 'DEMOKEY001', TEAM_ID = 'DEMOTEAM01';
const expiration = Math.floor(Date.now() / 1000) + 86400;
const body = JSON.parse(payload(alertId));

// send(i) -> Promise<true | error text>; close() -> Promise.
function apns2Client() {
  if (port !== 443) throw new Error('apns2 only connects to port 443');
  const { ApnsClient, Notification, Priority } = require('apns2');
  const client = new ApnsClient({ team: TEAM_ID, keyId: KEY_ID, signingKey: fs.readFileSync(keyFile),
                                  defaultTopic: TOPIC, host: '127.0.0.1', requestTimeout: 0 });
  return {
    send: (i) => client.send(new Notification(apnsToken(apnsIndex(i)), {
      alert: body.aps.alert, sound: 'default', aps: { 'interruption-level': 'time-sensitive' },
      data: { alert_id: alertId, test: false }, priority: Priority.immediate, expiration, collapseId: alertId,
    })).then(() => true, (e) => `${e.statusCode || ''} ${e.reason || e.message}`),
    close: () => client.close(),
  };
}

function nodeApnClient() {
  const apn = require('@parse/node-apn');
  const provider = new apn.MultiProvider({
    token: { key: fs.readFileSync(keyFile), keyId: KEY_ID, teamId: TEAM_ID },
    address: '127.0.0.1', port, rejectUnauthorized: false, clientCount: connections, requestTimeout: 60000,
  });
  const note = new apn.Notification();
  note.rawPayload = body;  // the exact bytes sirenad sends, so the simulator counts alert_id
  note.topic = TOPIC; note.pushType = 'alert'; note.priority = 10; note.expiry = expiration; note.collapseId = alertId;
  return {
    send: (i) => provider.send(note, apnsToken(apnsIndex(i))).then(
      (r) => r.failed.length === 0 || `${r.failed[0].status || ''} ${JSON.stringify(r.failed[0].response || r.failed[0].error)}`,
      (e) => String(e)),
    close: () => provider.shutdown(),
  };
}

async function main() {
  const t0 = process.hrtime.bigint(), cpu0 = process.cpuUsage();
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  const client = which === 'apns2' ? apns2Client() : nodeApnClient();
  const out = { client: which, sent: 0, ok: 0, failed: 0 };
  let next = 0;
  // WINDOW workers, each sending its next notification when the previous one is answered.
  const worker = async () => {
    while (next < count) {
      const i = next++;
      ++out.sent;
      const r = await client.send(i);
      if (out.first_ms === undefined) out.first_ms = since();
      if (r === true) ++out.ok;
      else if (++out.failed === 1) out.error = r;
    }
  };
  await Promise.all(Array.from({ length: Math.min(windowSize, count) }, worker));
  out.seconds = since() / 1000;
  const cpu = process.cpuUsage(cpu0);
  out.cpu_s = (cpu.user + cpu.system) / 1e6;
  out.maxrss_kb = process.resourceUsage().maxRSS;
  await Promise.race([client.close(), new Promise((r) => setTimeout(r, 2000))]);
  console.log(JSON.stringify(out));
  process.exit(0);
}

main().catch((e) => { console.error(`peer.js: ${e.stack || e}`); process.exit(1); });
