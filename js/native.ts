// The compiled addon, loaded once per process (a native module loaded from many places, e.g. one
// per jest test file, can fail with "Illegal invocation").
import type * as Binding from '../native/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const binding: typeof Binding = require('../native/index.js');
export type NativeBus = Binding.NativeBus;
export type NativeSubscription = Binding.NativeSubscription;
