import { Logger, type LoggerService } from '@nestjs/common';
import type { LogRecord } from '../types';

/** The bus's log records, sent to a Nest logger; levels map error/warn/log/debug/verbose. */
export function nestLogSink(logger: LoggerService = new Logger('EventBus')): (record: LogRecord) => void {
  return (record) => {
    const fields = record.fields && Object.keys(record.fields).length > 0 ? ` ${JSON.stringify(record.fields)}` : '';
    const message = `${record.message}${fields}`;
    switch (record.level) {
      case 'error':
        logger.error(message);
        break;
      case 'warn':
        logger.warn(message);
        break;
      case 'info':
        logger.log(message);
        break;
      case 'debug':
        logger.debug?.(message);
        break;
      default:
        logger.verbose?.(message);
    }
  };
}
