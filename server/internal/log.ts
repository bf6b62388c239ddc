/**
 * Structured logs of the reference servers: one JSON object per event. Internal.
 * @internal
 */

/** One log event. Tokens and other secrets never appear in it. */
export interface LogEntry {
  /** ISO 8601 time. */
  readonly time: string;
  /** Which server: its id, or `control`. */
  readonly server: string;
  /** What happened, such as `connection`, `item-complete`, `http`. */
  readonly event: string;
  readonly [field: string]: unknown;
}

/** Receives log events. */
export type Logger = (entry: LogEntry) => void;

/** A logger that writes one JSON line per event to standard output. */
export const jsonLinesLogger: Logger = (entry) => {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
};

/**
 * A log function for one server; a no-op without a logger.
 * @param server the server's id
 * @param logger where entries go
 */
export function logFor(
  server: string,
  logger: Logger | undefined,
): (event: string, fields?: Record<string, unknown>) => void {
  if (!logger) return () => undefined;
  return (event, fields = {}) => {
    try {
      logger({ time: new Date().toISOString(), server, event, ...fields });
    } catch {
      // A failing logger must not take the server down.
    }
  };
}
