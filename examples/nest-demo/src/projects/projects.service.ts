import { Injectable, NotFoundException } from '@nestjs/common';
import { RealtimeEventsService } from '@situs/event-bus/nest';
import { randomUUID } from 'node:crypto';

export interface Project {
  id: string;
  name: string;
  status: string;
  updatedAt: string;
}

export type ProjectChanges = Partial<Pick<Project, 'name' | 'status'>>;

/**
 * Projects kept in memory (the demo is about the events, not the storage). Every change is
 * published through the drop-in RealtimeEventsService, exactly as legacy callers do.
 */
@Injectable()
export class ProjectsService {
  private readonly projects = new Map<string, Project>();

  constructor(private readonly realtime: RealtimeEventsService) {}

  list(): Project[] {
    return [...this.projects.values()];
  }

  create(name: string): Project {
    const project: Project = { id: `p-${randomUUID().slice(0, 8)}`, name, status: 'draft', updatedAt: new Date().toISOString() };
    this.projects.set(project.id, project);
    // Legacy name on purpose: the service maps PROJECT_CREATED to project.created.
    this.realtime.publish('PROJECT_CREATED', { projectId: project.id, name: project.name, status: project.status });
    return project;
  }

  update(id: string, changes: ProjectChanges): Project {
    const project = this.get(id);
    const previousStatus = project.status;
    Object.assign(project, changes, { updatedAt: new Date().toISOString() });
    this.realtime.publish('PROJECT_UPDATED', { projectId: id, name: project.name, status: project.status });
    if (changes.status !== undefined && changes.status !== previousStatus) {
      this.realtime.publish('PROJECT_STATUS_CHANGED', { projectId: id, from: previousStatus, to: project.status });
    }
    return project;
  }

  remove(id: string): void {
    const project = this.get(id);
    this.projects.delete(id);
    this.realtime.publish('PROJECT_DELETED', { projectId: id, name: project.name });
  }

  private get(id: string): Project {
    const project = this.projects.get(id);
    if (!project) throw new NotFoundException(`no project ${id}`);
    return project;
  }
}
