// Node.js peer server for bench/run.py, on Node's own http module (one process,
// one event loop, like a libuv server). Routes:
//   GET /             -> "Hello, World!"
//   POST /echo        -> the request body
//   GET /big?bytes=N  -> N bytes
// Usage: node node_http.js [--host ADDR] [--port N]; prints
// "listening on http://HOST:PORT" once bound.
'use strict';

const http = require('http');

const MAX_BODY_BYTES = 64 * 1024 * 1024;
const HELLO = Buffer.from('Hello, World!');

function parseArgs(argv) {
  const options = { host: '127.0.0.1', port: 8080 };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${argv[i]} needs a value`);
    if (argv[i] === '--host') options.host = value;
    else if (argv[i] === '--port') options.port = Number.parseInt(value, 10);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return options;
}

// The /big body, grown to the largest size asked for so far and sliced (no copy), so a
// request does not allocate its body.
let bigBody = Buffer.alloc(0);
function bigBodyOf(len) {
  if (bigBody.length < len) bigBody = Buffer.alloc(len, 'x');
  return bigBody.subarray(0, len);
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length });
  res.end(body);
}

function route(req, res) {
  const [path, query = ''] = req.url.split('?', 2);
  if (req.method === 'GET' && path === '/') {
    send(res, 200, 'text/plain', HELLO);
  } else if (req.method === 'POST' && path === '/echo') {
    const chunks = [];
    let received = 0;
    req.on('data', (chunk) => {
      received += chunk.length;
      if (received > MAX_BODY_BYTES) {
        send(res, 413, 'text/plain', 'body too large\n');
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      send(res, 200, 'application/octet-stream', Buffer.concat(chunks, received));
    });
  } else if (req.method === 'GET' && path === '/big') {
    const match = /(?:^|&)bytes=(\d+)(?:&|$)/.exec(query);
    const len = match ? Number.parseInt(match[1], 10) : NaN;
    if (!(len >= 0 && len <= MAX_BODY_BYTES)) {
      send(res, 400, 'text/plain', 'need ?bytes=N, N <= 64 MiB\n');
    } else {
      send(res, 200, 'application/octet-stream', bigBodyOf(len));
    }
  } else {
    send(res, 404, 'text/plain', 'not found\n');
  }
}

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  console.error(`node peer: ${error.message}`);
  process.exit(2);
}
const server = http.createServer(route);
// The benchmark keeps connections idle on purpose; Node's 5 s default would close them.
server.keepAliveTimeout = 0;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.on('error', (error) => {
  console.error(`node peer: cannot listen on ${options.host}:${options.port}: ${error.message}`);
  process.exit(1);
});
server.listen({ host: options.host, port: options.port, backlog: 4096 }, () => {
  const address = server.address();
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  console.log(`listening on http://${host}:${address.port}`);
});
