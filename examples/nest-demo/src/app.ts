import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { LogLevel } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import type { DemoConfig } from './demo-config';
import { PageSseServer } from './events/page-sse-server';
import { WebhookRegistration } from './webhooks/webhook-registration';

export interface DemoApp {
  app: NestExpressApplication;
  /** http://host:port of the Nest app (the page is at `/`). */
  url: string;
  /** The Rust SSE server the page connects to. */
  sseUrl: string;
  webhookEndpointId: string;
  close(): Promise<void>;
}

/** Boots the demo: Nest app listening, Rust SSE server up, webhook receiver registered. */
export async function startDemo(config: DemoConfig, logLevels: LogLevel[] = ['warn', 'error']): Promise<DemoApp> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    // The webhook receiver verifies signatures over the exact bytes received.
    rawBody: true,
    // Open SSE responses would otherwise keep app.close() waiting.
    forceCloseConnections: true,
    logger: logLevels,
  });
  app.useStaticAssets(config.publicDir);
  await app.listen(config.port, config.host);
  const { port } = app.getHttpServer().address() as AddressInfo;
  const url = `http://${config.host}:${port}`;
  const webhookEndpointId = await app.get(WebhookRegistration).register(url);
  return {
    app,
    url,
    sseUrl: app.get(PageSseServer).url,
    webhookEndpointId,
    close: () => app.close(),
  };
}
