import { useState, type FormEvent } from 'react';
import { api, usePolled, type Project } from './api';

const STATUSES = ['draft', 'live', 'archived'];

/** Create, rename, change status and delete projects through the REST endpoints. */
export function ProjectsPanel({ lastPosition }: { lastPosition: number }) {
  const [name, setName] = useState('');
  const [error, setError] = useState<string>();
  const [bump, setBump] = useState(0);
  const projects = usePolled<Project[]>('/api/projects', 5000, `${lastPosition}:${bump}`) ?? [];

  const run = (request: Promise<unknown>): void => {
    setError(undefined);
    request.then(() => setBump((n) => n + 1), (err: unknown) => setError(String(err)));
  };
  const create = (e: FormEvent): void => {
    e.preventDefault();
    if (!name.trim()) return;
    run(api('/api/projects', { method: 'POST', body: { name } }));
    setName('');
  };

  return (
    <section className="panel projects">
      <div className="panel-head">
        <h2>Projects</h2>
        <span className="muted">REST → RealtimeEventsService.publish</span>
      </div>
      <form id="create-project" onSubmit={create}>
        <input id="project-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="New project name" />
        <button type="submit">Create</button>
      </form>
      {error && <p className="error">{error}</p>}
      <ul id="projects">
        {projects.length === 0 && <li className="empty">No projects yet.</li>}
        {projects.map((p) => (
          <li key={p.id} data-id={p.id}>
            <div>
              <div className="project-name">{p.name}</div>
              <div className="muted">{p.id}</div>
            </div>
            <div className="actions">
              <select
                value={p.status}
                aria-label="status"
                onChange={(e) => run(api(`/api/projects/${p.id}`, { method: 'PATCH', body: { status: e.target.value } }))}
              >
                {STATUSES.map((s) => (
                  <option key={s}>{s}</option>
                ))}
              </select>
              <button
                className="secondary"
                onClick={() => {
                  const renamed = window.prompt('New name', p.name)?.trim();
                  if (renamed && renamed !== p.name) run(api(`/api/projects/${p.id}`, { method: 'PATCH', body: { name: renamed } }));
                }}
              >
                Rename
              </button>
              <button className="danger" onClick={() => run(api(`/api/projects/${p.id}`, { method: 'DELETE' }))}>
                Delete
              </button>
            </div>
          </li>
        ))}
      </ul>
    </section>
  );
}
