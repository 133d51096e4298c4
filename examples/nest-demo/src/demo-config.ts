/** What the demo app is started with (main.ts reads it from the environment and argv). */
export interface DemoConfig {
  /** A store URL for the bus; default EVENT_STORE_URL, else sqlite://./event-bus.db. */
  storeUrl?: string;
  /** HTTP port of the Nest app (0: a free one). */
  port: number;
  host: string;
  /** Port of the Rust SSE server the page connects to (0: a free one). */
  ssePort: number;
  /** Where the page (index.html, app.js, styles.css) is served from. */
  publicDir: string;
}

export const DEMO_CONFIG = Symbol('DEMO_CONFIG');
