// Inputs of bench/fanout/run.sh, generated so that sirenad, h2load and the Node peers
// send the same requests:
//   node gen.js recipients N DIR CHUNK  NDJSON files DIR/recipients-NNN.ndjson for
//                                       POST /v1/recipients/import; prints "APNS FCM"
//   node gen.js apns-token I            recipient I's APNs token (64 hex)
//   node gen.js uris N BASE FILE        BASE/3/device/<token of the Ith APNs recipient>, one a line
//   node gen.js jwt KEYFILE KID TEAM    an ES256 provider JWT (Apple: header alg+kid, claims iss+iat)
//   node gen.js payload ALERT_ID        the body apns_payload() renders for the flood alert
//
// Recipient i has exactly one push token: APNs when i % 10 < 7 (70%), FCM otherwise.
// Every recipient lies inside the polygon of flood.cap.xml (Soliera), so the Extreme /
// Immediate alert reaches all of them whatever their topics.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const isApns = (i) => i % 10 < 7;
const apnsToken = (i) => (i + 1).toString(16).padStart(64, '0');
const fcmToken = (i) => `fcm-${i}-` + 'f'.repeat(140);
// The APNs recipients in order: the Ith APNs token belongs to recipient apnsIndex(I).
const apnsIndex = (k) => Math.floor(k / 7) * 10 + (k % 7);

function recipients(n, dir, chunk) {
  let apns = 0, fcm = 0, file = 0;
  for (let start = 0; start < n; start += chunk, ++file) {
    const lines = [];
    for (let i = start; i < Math.min(n, start + chunk); ++i) {
      // A deterministic spread over about 1.5 x 1.5 km of Soliera.
      const lat = 44.730 + ((i * 7919) % 15000) / 1e6;
      const lon = 10.915 + ((i * 104729) % 20000) / 1e6;
      const push = isApns(i)
        ? { platform: 'apns', app: 'it.comune.soliera.app', token: apnsToken(i) }
        : { platform: 'fcm', app: 'soliera-app', token: fcmToken(i) };
      isApns(i) ? ++apns : ++fcm;
      lines.push(JSON.stringify({ id: `b-${i}`, language: 'it', topics: ['Met'], push: [push],
                                  locations: [{ lat, lon }] }));
    }
    fs.writeFileSync(path.join(dir, `recipients-${String(file).padStart(3, '0')}.ndjson`), lines.join('\n') + '\n');
  }
  console.log(`${apns} ${fcm}`);
}

function uris(n, base, file) {
  const out = fs.createWriteStream(file);
  const lines = [];
  for (let k = 0; k < n; ++k) lines.push(`${base}/3/device/${apnsToken(apnsIndex(k))}`);
  out.end(lines.join('\n') + '\n');
}

function jwt(keyFile, kid, team) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'ES256', kid })}.${b64({ iss: team, iat: Math.floor(Date.now() / 1000) })}`;
  // JOSE wants r||s (64 bytes), not DER: RFC 7518 §3.4.
  const sig = crypto.sign('sha256', Buffer.from(input), { key: fs.readFileSync(keyFile), dsaEncoding: 'ieee-p1363' });
  console.log(`${input}.${sig.toString('base64url')}`);
}

// Keep in step with apns_payload() in gateways/apns/apns.cc and the texts of flood.cap.xml.
const payload = (alertId) => JSON.stringify({
  aps: { alert: { title: 'Secchia in piena', body: 'Salite ai piani alti.' },
         'interruption-level': 'time-sensitive', sound: 'default' },
  alert_id: alertId, test: false,
});

module.exports = { apnsToken, apnsIndex, payload };

if (require.main === module) {
  const [cmd, ...a] = process.argv.slice(2);
  switch (cmd) {
    case 'recipients': recipients(Number(a[0]), a[1], Number(a[2] || 50000)); break;
    case 'apns-token': console.log(apnsToken(Number(a[0]))); break;
    case 'uris': uris(Number(a[0]), a[1], a[2]); break;
    case 'jwt': jwt(a[0], a[1], a[2]); break;
    case 'payload': process.stdout.write(payload(a[0])); break;
    default: console.error('usage: node gen.js recipients|apns-token|uris|jwt|payload ...'); process.exit(2);
  }
}
