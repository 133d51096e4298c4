import { Injectable } from '@nestjs/common';
import type { BusEvent } from '@situs/event-bus';
import { OnBusEvent } from '@situs/event-bus/nest';

/** The demo's @OnBusEvent handler: counts project events per type, as an audit log would. */
@Injectable()
export class AuditHandler {
  private readonly counts = new Map<string, number>();

  @OnBusEvent('project.**')
  record(event: BusEvent): void {
    this.counts.set(event.type, (this.counts.get(event.type) ?? 0) + 1);
  }

  total(): number {
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return total;
  }

  byType(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}
