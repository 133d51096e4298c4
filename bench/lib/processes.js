// Helpers the multi-process benchmarks share: a forked child answering requests over IPC, and CPU
// accounting from /proc (Linux).
const fs = require('node:fs');
const readline = require('node:readline');
const { fork, spawn } = require('node:child_process');

/**
 * Request/reply bookkeeping for a child process, whatever carries the messages: `send(msg)` writes
 * a request; feed each message the child sends to `receive` (`{ ready: true }` first, then
 * `{ id, ok, reply | error }`). `request(cmd, fields)` resolves with the child's reply.
 */
function connect(child, role, send) {
  let nextId = 0;
  const waiting = new Map();
  let onReady;
  const ready = new Promise((resolve, reject) => {
    onReady = resolve;
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${role} exited (${code}) before it was ready`)));
  });
  child.on('exit', (code) => {
    for (const w of waiting.values()) w.reject(new Error(`${role} exited (${code})`));
    waiting.clear();
  });
  const receive = (msg) => {
    if (msg.ready) return onReady();
    const w = waiting.get(msg.id);
    if (!w) return; // a reply that arrived after the child's exit was handled
    waiting.delete(msg.id);
    if (msg.ok) w.resolve(msg.reply);
    else w.reject(new Error(`${role}: ${msg.error}`));
  };
  const handle = {
    child,
    ready,
    request(cmd, fields = {}) {
      const id = ++nextId;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        send({ id, cmd, ...fields });
      });
    },
    exited: new Promise((resolve) => child.once('exit', resolve)),
  };
  return { receive, handle };
}

/**
 * The child side of spawnChild: answers each `{ id, cmd, … }` with `handlers[cmd](msg)`'s result
 * (or its error), says it is ready, and exits when the parent goes away.
 */
function serve(handlers) {
  process.on('message', async (msg) => {
    try {
      const reply = await handlers[msg.cmd](msg);
      process.send({ id: msg.id, ok: true, reply });
    } catch (err) {
      process.send({ id: msg.id, ok: false, error: String((err && err.stack) || err) });
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}

/** Forks `file` as `role`, talking over the IPC channel. */
function spawnChild(file, role, args) {
  const child = fork(file, [role, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { receive, handle } = connect(child, role, (msg) => child.send(msg));
  child.on('message', receive);
  return handle;
}

/** Starts a native helper speaking the same protocol as JSON lines on stdin/stdout. */
function spawnNative(binary, role, args = []) {
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const { receive, handle } = connect(child, role, (msg) => child.stdin.write(`${JSON.stringify(msg)}\n`));
  readline.createInterface({ input: child.stdout }).on('line', (text) => receive(JSON.parse(text)));
  return handle;
}

/** CPU seconds (user + system) of a process or `pid/task/tid`, from /proc (100 Hz ticks). */
function cpuOf(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime
  } catch {
    return 0;
  }
}

/** CPU seconds per thread name (node = the JS main thread, tokio-runtime-w = tokio workers, …). */
function threadsCpu(pid) {
  const byName = {};
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      byName[name] = (byName[name] ?? 0) + cpuOf(`${pid}/task/${tid}`);
    }
  } catch {
    // exited
  }
  return byName;
}

/** Busy, stolen (by the hypervisor), softirq and total CPU seconds of the whole machine. */
function machineCpu() {
  try {
    const [, ...t] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already counted in user)
    const total = t.slice(0, 8).reduce((a, b) => a + b, 0);
    const steal = t[7] ?? 0;
    return { busy: (total - t[3] - t[4] - steal) / 100, steal: steal / 100, softirq: (t[6] ?? 0) / 100, total: total / 100 };
  } catch {
    return { busy: 0, steal: 0, softirq: 0, total: 0 };
  }
}

module.exports = { serve, spawnChild, spawnNative, cpuOf, threadsCpu, machineCpu };
