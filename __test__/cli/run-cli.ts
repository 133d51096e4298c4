// Runs the built CLI (dist/cli/main.js, the package's bin) as a child process, as an operator does.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli', 'main.js');

if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build:ts\` first`);

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of a run: this one's, without EVENT_STORE_URL unless `env` gives it. */
function environment(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  delete base.EVENT_STORE_URL;
  return { ...base, ...env };
}

/** A guard against a hang, not a timing assertion: a run that does not end by itself fails. */
const HANG_GUARD_MS = 60_000;

/** Runs `situs-event-bus ...args` to its end; stdout is a pipe (not a TTY). */
export function cli(args: string[], env?: Record<string, string | undefined>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: environment(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), HANG_GUARD_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Each line of `text` parsed as JSON (a line that is not JSON fails the parse). */
export function jsonLines<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

/** A CLI left running (`tail`): its output so far, and waiting for lines. */
export class RunningCli {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<CliResult>;

  constructor(args: string[], env?: Record<string, string | undefined>) {
    this.child = spawn(process.execPath, [CLI, ...args], { env: environment(env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    const guard = setTimeout(() => this.child.kill('SIGKILL'), HANG_GUARD_MS);
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        clearTimeout(guard);
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** Resolves once `predicate` holds for the output (polled, bounded). */
  async until(predicate: (run: RunningCli) => boolean, what: string): Promise<void> {
    for (let waited = 0; waited < HANG_GUARD_MS; waited += 20) {
      if (predicate(this)) return;
      if (this.child.exitCode !== null) throw new Error(`the CLI exited (${this.child.exitCode}) before ${what}: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`gave up waiting for ${what}; stderr: ${this.stderr}`);
  }
}

/** Polls (bounded) until `predicate` holds; what follows asserts the outcome. */
export async function eventually(predicate: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let waited = 0; waited < HANG_GUARD_MS; waited += 25) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** A port on 127.0.0.1 that refuses connections (it was free a moment ago). */
export async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Asserts the run failed with `code` and said so in one stderr line, without a stack trace. */
export function expectOneLineFailure(result: CliResult, code: number, line: RegExp): void {
  expect({ code: result.code, stdout: result.stdout }).toEqual({ code, stdout: '' });
  const lines = result.stderr.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(line);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}
