// Until Ctrl-C: resolves on SIGINT or SIGTERM (or when `also` fires), keeping Node alive until
// then (an idle subscription does not).
export function untilStopped(also?: (stop: () => void) => void): Promise<NodeJS.Signals | 'closed'> {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const finish = (why: NodeJS.Signals | 'closed'): void => {
      clearInterval(keepAlive);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(why);
    };
    const onSignal = (signal: NodeJS.Signals): void => finish(signal);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    also?.(() => finish('closed'));
  });
}
