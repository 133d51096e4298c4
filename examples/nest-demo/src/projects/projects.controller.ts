import { BadRequestException, Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { ProjectsService, type Project, type ProjectChanges } from './projects.service';

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new BadRequestException(`${field} must be a non-empty string`);
  return value.trim();
}

@Controller('api/projects')
export class ProjectsController {
  constructor(private readonly projects: ProjectsService) {}

  @Get()
  list(): Project[] {
    return this.projects.list();
  }

  @Post()
  create(@Body() body: { name?: unknown }): Project {
    return this.projects.create(text(body?.name, 'name'));
  }

  @Patch(':id')
  update(@Param('id') id: string, @Body() body: { name?: unknown; status?: unknown }): Project {
    const changes: ProjectChanges = {};
    if (body?.name !== undefined) changes.name = text(body.name, 'name');
    if (body?.status !== undefined) changes.status = text(body.status, 'status');
    return this.projects.update(id, changes);
  }

  @Delete(':id')
  @HttpCode(204)
  remove(@Param('id') id: string): void {
    this.projects.remove(id);
  }
}
