import { usePolled, type Delivery } from './api';

/** `bus.webhooks.deliveries()` for the demo's own receiver, newest first. */
export function WebhookPanel({ lastPosition, verified }: { lastPosition: number; verified?: number }) {
  const deliveries = usePolled<Delivery[]>('/api/webhooks/deliveries', 2000, lastPosition) ?? [];
  return (
    <section className="panel webhooks">
      <div className="panel-head">
        <h2>Webhook deliveries</h2>
        <span className="muted">to /webhooks/receiver · Standard Webhooks signatures verified: {verified ?? 0}</span>
      </div>
      <table id="deliveries">
        <thead>
          <tr>
            <th>event</th>
            <th>type</th>
            <th>webhook-id</th>
            <th>status</th>
            <th>attempts</th>
            <th>answer</th>
          </tr>
        </thead>
        <tbody>
          {deliveries.length === 0 && (
            <tr>
              <td colSpan={6} className="empty">No deliveries yet.</td>
            </tr>
          )}
          {deliveries.slice(0, 8).map((d) => (
            <tr key={d.id}>
              <td className="pos">#{d.position}</td>
              <td>{d.eventType}</td>
              <td className="mono">{d.webhookId}</td>
              <td>
                <span className={`badge badge-${d.status}`}>{d.status}</span>
              </td>
              <td>{d.attempts}</td>
              <td className="muted">{d.lastError ?? d.lastStatus ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
