// One measured fan-out, for bench/fanout/run.sh:
//   node alert.js SIRENAD_URL SIRENAD_PID CAP_FILE IDENTIFIER APNS_ADMIN FCM_ADMIN WANT_APNS WANT_FCM
// Posts the CAP alert, then watches both simulators' GET /stats and the alert's progress
// until every message is accepted (or 300 s pass). Prints one JSON object:
//   post_ms          the POST /v1/alerts round trip (202 = the alert is durable)
//   first_metric_ms  sirena_time_to_first_message_seconds of this alert (the histogram's sum grows by it)
//   first_sim_ms     when a simulator was first seen with requests > 0 (polled back to back: an upper bound)
//   apns_ms, fcm_ms  when each simulator had accepted all its messages (polled every 5 ms)
//   done_ms          when GET /v1/alerts/{id} first said "completed" (polled every 20 ms)
//   cpu_s            utime + stime of sirenad from just before the POST to done
//   hwm_kb           sirenad's VmHWM, reset (clear_refs 5) just before the POST
//   timeline         [ms, messages accepted by both simulators], every 500 ms until all are
// All times are from the moment the POST was sent.
'use strict';
const fs = require('node:fs');
const { agent, HZ, request, json, sleep, procTicks } = require('../lib.js');

const [base, pidArg, capFile, identifier, apnsAdmin, fcmAdmin, wantApnsArg, wantFcmArg] = process.argv.slice(2);
const pid = Number(pidArg), wantApns = Number(wantApnsArg), wantFcm = Number(wantFcmArg);
const AUTH = { authorization: 'Bearer demo-soliera-operator' };

const cpuTicks = () => procTicks(pid);
const firstMessageSum = async () => {
  const m = (await request(`${base}/metrics`)).body.match(/^sirena_time_to_first_message_seconds_sum(?:\{[^}]*\})? (\S+)$/m);
  return m ? Number(m[1]) : 0;
};

async function main() {
  const cap = fs.readFileSync(capFile, 'utf8').replace('IDENTIFIER', identifier);
  const sumBefore = await firstMessageSum();
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');  // VmHWM := VmRSS, so the import's peak is left out
  const cpuBefore = cpuTicks();
  const t0 = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  const r = await request(`${base}/v1/alerts`, { method: 'POST', body: cap,
    headers: { ...AUTH, 'content-type': 'application/cap+xml' } });
  const out = { post_ms: since() };
  if (r.status !== 202) throw new Error(`POST /v1/alerts: ${r.status} ${r.body}`);
  const id = JSON.parse(r.body).id;
  out.id = id;

  // The first request, seen from the simulators: poll back to back until one has any.
  const deadline = 300e3;
  while (out.first_sim_ms === undefined && since() < deadline) {
    const [a, f] = await Promise.all([json(`${apnsAdmin}/stats`), json(`${fcmAdmin}/stats`)]);
    if (a.requests + f.requests > 0) out.first_sim_ms = since();
  }
  let lastAlert = 0, alert = null, lastMark = 0;
  out.timeline = [];  // [ms, accepted by both simulators] every 500 ms: where a run slows down
  while (since() < deadline) {
    const now = since();
    if (out.apns_ms === undefined || out.fcm_ms === undefined) {
      const [a, f] = await Promise.all([json(`${apnsAdmin}/stats`), json(`${fcmAdmin}/stats`)]);
      if (out.apns_ms === undefined && a.accepted >= wantApns) out.apns_ms = now;
      if (out.fcm_ms === undefined && f.accepted >= wantFcm) out.fcm_ms = now;
      if (now - lastMark >= 500) {
        lastMark = now;
        out.timeline.push([Math.round(now), a.accepted + f.accepted]);
      }
    }
    if (now - lastAlert >= 20) {
      lastAlert = now;
      alert = await json(`${base}/v1/alerts/${id}`, { headers: AUTH });
      if (alert.state === 'completed') { out.done_ms = since(); break; }
    }
    await sleep(5);
  }
  out.cpu_s = (cpuTicks() - cpuBefore) / HZ;
  out.hwm_kb = Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)[1]);
  // The histogram is observed once per alert: wait for it (it may trail the first answer).
  for (let i = 0; i < 100 && out.first_metric_ms === undefined; ++i) {
    const sum = await firstMessageSum();
    if (sum !== sumBefore) out.first_metric_ms = (sum - sumBefore) * 1000;
    else await sleep(10);
  }
  out.state = alert && alert.state;
  out.progress = alert && alert.progress;
  console.log(JSON.stringify(out));
  agent.destroy();
}

main().catch((e) => { console.error(`alert.js: ${e.stack || e}`); process.exit(1); });
