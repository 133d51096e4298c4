import { matchesPattern, type BusEvent } from '@situs/event-bus/react';
import { useMemo, useState } from 'react';

const TYPE_FILTERS = ['**', 'project.*', 'project.created', 'project.updated', 'project.status_changed', 'project.deleted', 'webhook.**'];

function time(timestamp: string | Date): string {
  return new Date(timestamp).toLocaleTimeString([], { hour12: false });
}

function summary(event: BusEvent): string {
  const payload = (event.payload ?? {}) as Record<string, unknown>;
  const parts = Object.entries(payload)
    .filter(([key]) => key !== 'projectId')
    .map(([key, value]) => `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return parts.join(' · ');
}

/** The live tail, newest first, filtered in the browser by type pattern and project. */
export function EventTail({ events }: { events: BusEvent[] }) {
  const [pattern, setPattern] = useState('**');
  const [projectId, setProjectId] = useState('');
  const projects = useMemo(() => [...new Set(events.map((e) => e.projectId).filter((p): p is string => !!p))], [events]);
  const shown = events.filter((e) => matchesPattern(pattern, e.type) && (!projectId || e.projectId === projectId)).reverse();

  return (
    <section className="panel tail">
      <div className="panel-head">
        <h2>Live events</h2>
        <div className="filters">
          <select id="type-filter" value={pattern} onChange={(e) => setPattern(e.target.value)} aria-label="type">
            {TYPE_FILTERS.map((p) => (
              <option key={p} value={p}>{p === '**' ? 'all types' : p}</option>
            ))}
          </select>
          <select id="project-filter" value={projectId} onChange={(e) => setProjectId(e.target.value)} aria-label="project">
            <option value="">all projects</option>
            {projects.map((p) => (
              <option key={p} value={p}>{p}</option>
            ))}
          </select>
        </div>
      </div>
      <ol id="tail">
        {shown.length === 0 && <li className="empty">No events yet: create a project.</li>}
        {shown.map((e) => (
          <li key={e.position} data-type={e.type} data-project={e.projectId ?? ''}>
            <span className="pos">#{e.position}</span>
            <span className={`type type-${e.type.split('.').pop()}`}>{e.type}</span>
            <span className="project">{e.projectId ?? '—'}</span>
            <span className="summary">{summary(e)}</span>
            <span className="time">{time(e.timestamp)}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}
