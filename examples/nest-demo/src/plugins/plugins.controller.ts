import { Controller, Delete, Get, HttpCode, Inject, NotFoundException, Post } from '@nestjs/common';
import { EventBusPluginRegistry, type InstalledPlugin } from '@situs/event-bus/nest';
import { ProjectActivityPlugin } from './project-activity.plugin';

export interface PluginsView {
  installed: InstalledPlugin[];
  activity: ReturnType<ProjectActivityPlugin['snapshot']>;
}

/** Lists the bus's plugins, and uninstalls / reinstalls the demo's at runtime (each step is published as plugin.*). */
@Controller('api/plugins')
export class PluginsController {
  constructor(
    @Inject(EventBusPluginRegistry) private readonly registry: EventBusPluginRegistry,
    @Inject(ProjectActivityPlugin) private readonly activity: ProjectActivityPlugin,
  ) {}

  @Get()
  list(): PluginsView {
    return { installed: this.registry.list(), activity: this.activity.snapshot() };
  }

  @Post('project-activity')
  install(): Promise<InstalledPlugin> {
    return this.registry.install(this.activity);
  }

  @Delete('project-activity')
  @HttpCode(204)
  async uninstall(): Promise<void> {
    if (!this.registry.get('project-activity')) throw new NotFoundException('project-activity is not installed');
    await this.registry.uninstall('project-activity');
  }
}
