import type { DemoApp } from './app';
import { SseClient } from './sse-client';

/** Polls `read` until `done` holds; the timeout is a hang guard, not a performance bound. */
export async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function json<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const response = await fetch(url, init);
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/**
 * Exercises each part of the running demo once and reports what it saw: REST create → both SSE
 * streams get it → the webhook receiver verified its signature → the audit handler counted it →
 * the plugin tracked it and is uninstalled and reinstalled → /health is up → /metrics counted
 * it; then update and delete.
 */
export async function smoke(demo: DemoApp, log: (line: string) => void): Promise<void> {
  const nestSse = await SseClient.open(`${demo.url}/api/events?types=project.*`);
  const rustSse = await SseClient.open(`${demo.sseUrl}?types=project.**`);
  try {
    const created = await json<{ id: string; name: string }>(`${demo.url}/api/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Smoke test' }),
    });
    if (created.status !== 201) throw new Error(`POST /api/projects answered ${created.status}`);
    const projectId = created.body.id;
    log(`REST      POST /api/projects → 201 ${projectId} "${created.body.name}"`);

    const isCreated = (m: { event: string; data: string }): boolean =>
      m.event === 'project.created' && (JSON.parse(m.data) as { projectId?: string }).projectId === projectId;
    const fromNest = await nestSse.waitFor(isCreated);
    const event = JSON.parse(fromNest.data) as { id: string; position: number };
    log(`SSE       @Sse() /api/events got project.created #${event.position} (${event.id})`);
    await rustSse.waitFor(isCreated);
    log(`SSE       Rust server ${demo.sseUrl} got project.created #${event.position}`);

    const status = await eventually(
      () => json<{ receiver: { recent: Array<{ eventId: string; verified: boolean; webhookId: string }> }; audit: { total: number } }>(`${demo.url}/api/status`),
      (s) => s.body.receiver.recent.some((r) => r.verified && r.eventId === event.id) && s.body.audit.total > 0,
      'the webhook receiver to verify the event',
    );
    const verified = status.body.receiver.recent.find((r) => r.eventId === event.id)!;
    log(`webhook   receiver verified ${verified.webhookId} (standardwebhooks signature ok)`);
    log(`handler   @OnBusEvent audit counted ${status.body.audit.total} project event(s)`);

    const plugins = await json<{ installed: Array<{ name: string; version: string }>; activity: Record<string, { type: string }> }>(`${demo.url}/api/plugins`);
    const stamped = (JSON.parse(fromNest.data) as { metadata?: { seenBy?: string } }).metadata?.seenBy;
    if (plugins.body.activity[projectId]?.type !== 'project.created' || stamped !== 'project-activity@1.0.0') {
      throw new Error(`the plugin did not see the event: ${JSON.stringify(plugins.body)}, metadata.seenBy=${stamped}`);
    }
    log(`plugin    ${plugins.body.installed.map((p) => `${p.name}@${p.version}`).join(', ')} tracked ${projectId}; its middleware stamped seenBy`);
    const uninstalled = await fetch(`${demo.url}/api/plugins/project-activity`, { method: 'DELETE' });
    const reinstalled = await json<{ name: string }>(`${demo.url}/api/plugins/project-activity`, { method: 'POST' });
    if (uninstalled.status !== 204 || reinstalled.status !== 201) throw new Error(`plugin uninstall → ${uninstalled.status}, install → ${reinstalled.status}`);
    log(`plugin    DELETE → 204 (plugin.uninstalled), POST → 201 (plugin.installed)`);

    const deliveries = await json<Array<{ eventId: string; status: string; attempts: number }>>(`${demo.url}/api/webhooks/deliveries`);
    const delivery = deliveries.body.find((d) => d.eventId === event.id);
    log(`webhook   bus.webhooks.deliveries(): ${delivery?.status ?? 'missing'} after ${delivery?.attempts ?? 0} attempt(s)`);

    const health = await json<{ status: string; info: Record<string, { status: string }> }>(`${demo.url}/health`);
    if (health.status !== 200 || health.body.status !== 'ok') throw new Error(`/health answered ${health.status} ${JSON.stringify(health.body)}`);
    log(`health    GET /health → 200 ${JSON.stringify(health.body.info)}`);

    const updated = await fetch(`${demo.url}/api/projects/${projectId}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'live' }),
    });
    const removed = await fetch(`${demo.url}/api/projects/${projectId}`, { method: 'DELETE' });
    await nestSse.waitFor((m) => m.event === 'project.deleted' && m.data.includes(projectId));
    log(`REST      PATCH → ${updated.status}, DELETE → ${removed.status}; SSE got project.updated, project.status_changed, project.deleted`);

    const metrics = await json<Record<string, number>>(`${demo.url}/metrics`);
    const m = metrics.body;
    if (!(m.published >= 4 && m.webhooksDelivered >= 1)) throw new Error(`/metrics did not count it: ${JSON.stringify(m)}`);
    log(`metrics   published=${m.published} delivered=${m.delivered} webhooksDelivered=${m.webhooksDelivered} sseConnections=${m.sseConnections}`);
  } finally {
    nestSse.close();
    rustSse.close();
  }
}
