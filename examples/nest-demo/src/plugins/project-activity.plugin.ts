import { Injectable } from '@nestjs/common';
import type { BusEvent, PublishedEvent } from '@situs/event-bus';
import { EventBusPlugin, OnBusEvent } from '@situs/event-bus/nest';

/**
 * The demo's plugin: remembers each project's last activity, and stamps every published event's
 * metadata with the plugin that saw it. Being a provider, it is installed at bootstrap; the page
 * (and `DELETE`/`POST /api/plugins/project-activity`) uninstalls and reinstalls it at runtime.
 */
@EventBusPlugin({ name: 'project-activity', version: '1.0.0' })
@Injectable()
export class ProjectActivityPlugin {
  private readonly lastActivity = new Map<string, { type: string; position: number }>();

  @OnBusEvent('project.**')
  remember(event: BusEvent): void {
    if (event.projectId) this.lastActivity.set(event.projectId, { type: event.type, position: event.position });
  }

  middleware(event: PublishedEvent): PublishedEvent {
    return { ...event, metadata: { ...event.metadata, seenBy: 'project-activity@1.0.0' } };
  }

  /** Projects with their last event, as the plugin saw them while installed. */
  snapshot(): Record<string, { type: string; position: number }> {
    return Object.fromEntries(this.lastActivity);
  }
}
