import { Command, Option } from 'commander';
import type { WebhookDeliveryQuery } from '../../index';
import { UsageError } from '../failure';
import { type GlobalOptions, withBus } from '../open-bus';
import { Output } from '../output';
import { parseTime, positiveInteger } from '../values';

const DELIVERY_STATUSES = ['pending', 'retrying', 'delivered', 'dead'];

interface DeliveriesOptions {
  endpoint?: string;
  status?: WebhookDeliveryQuery['status'];
  event?: string;
  limit?: number;
}

interface ReplayOptions {
  failed?: boolean;
  endpoint?: string;
  since?: Date;
}

export function registerWebhooks(program: Command, output: Output): void {
  const webhooks = program
    .command('webhooks')
    .description('webhook endpoints and their deliveries')
    .addHelpText(
      'after',
      "\nThis CLI never sends webhooks itself (its bus runs no webhook workers): a replayed\n" +
        'delivery is made due again, and the workers of the running application send it.',
    );

  webhooks
    .command('list')
    .description('registered endpoints, one JSON line each (secrets are never shown)')
    .option('--tenant <id>', "only this tenant's endpoints")
    .action(async (options: { tenant?: string }, command: Command) => {
      await withBus(command.optsWithGlobals<GlobalOptions>(), async (bus) => {
        const endpoints = await bus.webhooks.list(options.tenant !== undefined ? { tenantId: options.tenant } : {});
        for (const endpoint of endpoints) await output.json(endpoint);
      });
    });

  webhooks
    .command('deliveries')
    .description('deliveries, newest first, one JSON line each with every attempt')
    .option('--endpoint <id>', "only this endpoint's deliveries")
    .addOption(new Option('--status <status>', 'only deliveries in this state').choices(DELIVERY_STATUSES))
    .option('--event <id>', 'only the deliveries of this event (its id)')
    .addOption(new Option('--limit <n>', 'at most this many (1 to 1000, default 100)').argParser(positiveInteger))
    .action(async (options: DeliveriesOptions, command: Command) => {
      await withBus(command.optsWithGlobals<GlobalOptions>(), async (bus) => {
        const query: WebhookDeliveryQuery = {};
        if (options.endpoint !== undefined) query.endpointId = options.endpoint;
        if (options.status !== undefined) query.status = options.status;
        if (options.event !== undefined) query.eventId = options.event;
        if (options.limit !== undefined) query.limit = options.limit;
        for (const delivery of await bus.webhooks.deliveries(query)) await output.json(delivery);
      });
    });

  webhooks
    .command('replay')
    .description('send a delivery again (same webhook-id), or with --failed an endpoint\'s dead ones')
    .argument('[deliveryId]', 'the delivery to send again, whatever its status', positiveInteger)
    .option('--failed', "instead: every dead delivery of --endpoint")
    .option('--endpoint <id>', 'with --failed: the endpoint')
    .option('--since <time>', 'with --failed: only deliveries created since (ISO-8601, or a duration ago)', (v) => parseTime(v))
    .addHelpText('after', '\nExamples:\n  situs-event-bus webhooks replay 1234\n  situs-event-bus webhooks replay --failed --endpoint 0190… --since 2h')
    .action(async (deliveryId: number | undefined, options: ReplayOptions, command: Command) => {
      if (options.failed) {
        if (deliveryId !== undefined) throw new UsageError('give a delivery id or --failed, not both');
        if (options.endpoint === undefined) throw new UsageError('--failed needs --endpoint <id>');
      } else {
        if (deliveryId === undefined) throw new UsageError('give the delivery id to replay, or --failed --endpoint <id>');
        if (options.endpoint !== undefined || options.since !== undefined) throw new UsageError('--endpoint and --since go with --failed');
      }
      const line = await withBus(command.optsWithGlobals<GlobalOptions>(), async (bus) => {
        if (options.failed) {
          const endpointId = options.endpoint as string;
          const { replayed } = await bus.webhooks.replayFailed(
            options.since !== undefined ? { endpointId, since: options.since } : { endpointId },
          );
          return `${replayed} dead ${replayed === 1 ? 'delivery' : 'deliveries'} of endpoint ${endpointId} due again`;
        }
        await bus.webhooks.replay(deliveryId as number);
        return `delivery ${deliveryId} due again`;
      });
      await output.line(line);
    });
}
