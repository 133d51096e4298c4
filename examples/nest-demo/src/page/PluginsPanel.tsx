import { useState } from 'react';
import { api, usePolled, type PluginsView } from './api';

/** `EventBusPluginRegistry.list()`: the demo's plugin, uninstalled and reinstalled at runtime. */
export function PluginsPanel({ lastPosition }: { lastPosition: number }) {
  const [bump, setBump] = useState(0);
  const view = usePolled<PluginsView>('/api/plugins', 2000, `${lastPosition}:${bump}`);
  const installed = view?.installed.find((p) => p.name === 'project-activity');
  const toggle = (): void => {
    void api(`/api/plugins/project-activity`, { method: installed ? 'DELETE' : 'POST' }).finally(() => setBump((n) => n + 1));
  };
  const tracked = Object.keys(view?.activity ?? {}).length;
  return (
    <section className="panel plugins">
      <div className="panel-head">
        <h2>Plugins</h2>
        <button id="toggle-plugin" className={installed ? 'danger' : 'secondary'} onClick={toggle} disabled={!view}>
          {installed ? 'Uninstall' : 'Install'} project-activity
        </button>
      </div>
      <p id="plugin-state" className="muted" data-installed={installed ? 'yes' : 'no'}>
        {installed
          ? `project-activity@${installed.version}: ${installed.handlers} handler, middleware stamps metadata.seenBy · last activity of ${tracked} project(s)`
          : 'project-activity is not installed: new events are not stamped'}
      </p>
    </section>
  );
}
