// Shared by the Node watchers of the benchmarks (bench/fanout/alert.js, bench/sms/watch.js):
// HTTP/1.1 requests on one keep-alive agent, a sleep, and a process's CPU from /proc.
'use strict';
const fs = require('node:fs');
const http = require('node:http');

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const HZ = 100;  // USER_HZ: /proc/PID/stat counts CPU in 1/100 s on Linux

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const json = async (url, opts) => JSON.parse((await request(url, opts)).body);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// utime + stime of a process, in 1/HZ s.
const procTicks = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);  // fields 14 and 15: utime, stime
};

module.exports = { agent, HZ, request, json, sleep, procTicks };
