import type { Metrics, Status } from './api';

function Counter({ id, label, value, hint }: { id: string; label: string; value: number | undefined; hint: string }) {
  return (
    <div className="counter" id={id}>
      <div className="counter-value">{value ?? '–'}</div>
      <div className="counter-label">{label}</div>
      <div className="counter-hint">{hint}</div>
    </div>
  );
}

export function Counters({ metrics, status }: { metrics?: Metrics; status?: Status }) {
  return (
    <section className="counters">
      <Counter id="published" label="published" value={metrics?.published} hint="events committed (this process)" />
      <Counter id="delivered" label="delivered" value={metrics?.delivered} hint="to subscribers" />
      <Counter id="webhooks" label="webhooks delivered" value={metrics?.webhooksDelivered} hint={`${status?.receiver.verified ?? 0} signatures verified`} />
      <Counter id="sse" label="SSE connections" value={metrics?.sseConnections} hint="open streams now" />
      <Counter id="audit" label="audited" value={status?.audit.total} hint="@OnBusEvent('project.**')" />
    </section>
  );
}
