import 'reflect-metadata';
import type { INestApplication, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

/** A Nest logger that records what it is given (and keeps the console quiet). */
export class RecordingLogger implements LoggerService {
  readonly records: Array<{ level: string; message: string; context?: string }> = [];
  private add(level: string, message: unknown, rest: unknown[]): void {
    const context = rest.length > 0 && typeof rest[rest.length - 1] === 'string' ? (rest[rest.length - 1] as string) : undefined;
    this.records.push({ level, message: String(message), context });
  }
  log(message: unknown, ...rest: unknown[]): void {
    this.add('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.add('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.add('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.add('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.add('verbose', message, rest);
  }
}

/** A real Nest 11 app listening on 127.0.0.1 (an ephemeral port); `url` has no trailing slash. */
export async function startApp(
  module: unknown,
  logger: LoggerService | false = false,
): Promise<{ app: INestApplication; url: string }> {
  const app = await NestFactory.create(module as never, { logger });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return { app, url };
}

/** Resolves once `predicate` holds (bounded polling; deliveries are asynchronous). */
export async function eventually(predicate: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}
