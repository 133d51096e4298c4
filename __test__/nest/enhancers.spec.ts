import 'reflect-metadata';
import {
  type CallHandler,
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  Inject,
  Injectable,
  Module,
  type NestInterceptor,
  type PipeTransform,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { EventBus, type BusEvent } from '@situs/event-bus';
import { BusEventParam, BusPayload, busEventOf, EventBusModule, isEventBusContext, OnBusEvent } from '@situs/event-bus/nest';
import type { Observable } from 'rxjs';
import { tap } from 'rxjs';
import { eventually, RecordingLogger, startApp } from './nest-app';

jest.setTimeout(60_000);

/** A global HTTP guard as apps write them: requests need a token; bus handlers are let through by the helper. */
const globalGuardSaw: string[] = [];
@Injectable()
class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    globalGuardSaw.push(context.getType());
    if (isEventBusContext(context)) return true;
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>();
    return request.headers['x-token'] === 'secret';
  }
}

/** Refuses events of project p-blocked. */
@Injectable()
class ProjectGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return busEventOf(context)?.projectId !== 'p-blocked';
  }
}

const intercepted: Array<{ type: string; contextType: string; position: number | undefined; after: boolean }> = [];

@Injectable()
class TraceInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const event = busEventOf(context);
    intercepted.push({ type: context.getType(), contextType: context.getClass().name, position: event?.position, after: false });
    return next.handle().pipe(tap(() => intercepted.push({ type: context.getType(), contextType: context.getClass().name, position: event?.position, after: true })));
  }
}

/** A pipe turning a string amount into cents. */
@Injectable()
class CentsPipe implements PipeTransform<string, number> {
  transform(value: string): number {
    const cents = Math.round(Number(value) * 100);
    if (!Number.isFinite(cents)) throw new Error(`amount ${value} is not a number`);
    return cents;
  }
}

const calls: Array<[string, unknown, unknown?]> = [];

@Injectable()
class Billing {
  @OnBusEvent('invoice.*', { enhancers: true })
  @UseGuards(ProjectGuard)
  @UseInterceptors(TraceInterceptor)
  guarded(event: BusEvent): void {
    calls.push(['guarded', event.payload]);
  }

  @OnBusEvent('invoice.paid', { enhancers: true })
  paid(@BusPayload('amount', CentsPipe) cents: number, @BusEventParam() event: BusEvent): void {
    calls.push(['paid', cents, event.type]);
  }

  // Without `enhancers`, no guard applies (not even a global one).
  @OnBusEvent('invoice.*')
  @UseGuards(ProjectGuard)
  plain(event: BusEvent): void {
    calls.push(['plain', event.payload]);
  }
}

@Controller()
class Api {
  constructor(@Inject(EventBus) private readonly bus: EventBus) {}

  @Get('publish')
  async publish(): Promise<{ position: number | null }> {
    const e = await this.bus.publish({ type: 'invoice.sent', payload: 'from http' });
    return { position: e.position };
  }
}

@Module({
  imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })],
  controllers: [Api],
  providers: [Billing, { provide: APP_GUARD, useClass: TokenGuard }],
})
class AppModule {}

describe('@OnBusEvent with enhancers: guards, interceptors and pipes', () => {
  it('run with a context of their own: a global HTTP guard lets handlers through, a handler guard refuses, interceptors wrap, pipes transform', async () => {
    const logger = new RecordingLogger();
    const { app, url } = await startApp(AppModule, logger);
    try {
      // The global guard still guards HTTP.
      expect((await fetch(`${url}/publish`)).status).toBe(403);
      const ok = await fetch(`${url}/publish`, { headers: { 'x-token': 'secret' } });
      expect(ok.status).toBe(200);

      const bus = app.get(EventBus);
      const blocked = await bus.publish({ type: 'invoice.sent', payload: 'blocked', projectId: 'p-blocked' });
      const paid = await bus.publish({ type: 'invoice.paid', payload: { amount: '12.34' }, projectId: 'p1' });
      const badAmount = await bus.publish({ type: 'invoice.paid', payload: { amount: 'lots' }, projectId: 'p1' });
      await eventually(() => calls.filter((c) => c[0] === 'plain').length === 4, 'plain handler on every invoice');
      await eventually(() => intercepted.filter((i) => i.after).length === 3, 'interceptor after the guarded calls');

      expect(calls.filter((c) => c[0] === 'guarded').map((c) => c[1])).toEqual(['from http', { amount: '12.34' }, { amount: 'lots' }]);
      expect(calls.filter((c) => c[0] === 'paid')).toEqual([['paid', 1234, 'invoice.paid']]);
      expect(calls.filter((c) => c[0] === 'plain').map((c) => c[1])).toEqual(['from http', 'blocked', { amount: '12.34' }, { amount: 'lots' }]);
      expect(intercepted.every((i) => i.type === 'situs-event-bus' && i.contextType === 'Billing')).toBe(true);
      expect(intercepted.map((i) => i.position)).not.toContain(blocked.position);

      // A refusal and a failing pipe are handler failures: logged with the handler's name.
      await eventually(() => logger.records.filter((r) => r.level === 'error').length >= 2, 'two failures logged');
      const errors = logger.records.filter((r) => r.level === 'error').map((r) => r.message);
      expect(errors).toContainEqual(expect.stringMatching(new RegExp(`^Billing\\.guarded failed on invoice\\.sent at position ${blocked.position}: Forbidden resource`)));
      expect(errors).toContainEqual(expect.stringMatching(new RegExp(`^Billing\\.paid failed on invoice\\.paid at position ${badAmount.position}: amount lots is not a number`)));
      expect(paid.position).toBeLessThan(badAmount.position!);
      // The global guard ran for the bus handlers too (and let them through), not only for HTTP.
      expect(globalGuardSaw.filter((t) => t === 'http')).toHaveLength(2);
      expect(globalGuardSaw.filter((t) => t === 'situs-event-bus')).toHaveLength(6); // 4 guarded + 2 paid
    } finally {
      await app.close();
    }
  });
});
