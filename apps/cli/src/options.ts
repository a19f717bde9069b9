/**
 * Flags and config files say the same things: one zod schema per command, keyed by the flags'
 * camelCase names. A config file (`--config run.json`) gives defaults, flags override it, and an
 * unknown key or a bad value is rejected naming the key and its flag.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** Raised for bad command-line or config input; the CLI prints the message alone and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Reads a JSON config file, naming the file in every error. */
export const readConfig = (path: string): Record<string, unknown> => {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--config ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--config ${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`--config ${path}: must hold a JSON object`);
  return value as Record<string, unknown>;
};

/**
 * Validates merged options: config values first, then flags the user actually typed (commander's
 * `getOptionValueSource(key) === 'cli'`), then schema defaults.
 */
export const resolveOptions = <S extends z.ZodObject>(
  schema: S, flags: Record<string, unknown>, typed: (key: string) => boolean, configPath?: string,
): z.infer<S> => {
  const config = configPath ? readConfig(configPath) : {};
  const known = new Set(Object.keys(schema.shape));
  for (const key of Object.keys(config))
    if (!known.has(key)) throw new UsageError(`${configPath}: unknown key '${key}' (known: ${[...known].join(', ')})`);
  const merged: Record<string, unknown> = { ...config };
  for (const [k, v] of Object.entries(flags)) if (known.has(k) && v !== undefined && (typed(k) || !(k in config))) merged[k] = v;
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue.path[0] ?? '');
    const from = key in config && !typed(key) ? `${configPath}: key '${key}'` : `${flagOf(key)}`;
    throw new UsageError(`${from}: ${issue.message} (got ${JSON.stringify(merged[key])})`);
  }
  return parsed.data as z.infer<S>;
};

/** Integers >= 1 given as flag strings or JSON numbers. */
export const positiveInt = () => z.coerce.number().int('must be an integer').positive('must be > 0');
/** Integers >= 0. */
export const nonNegativeInt = () => z.coerce.number().int('must be an integer').min(0, 'must be >= 0');
/** Numbers >= 0. */
export const nonNegative = () => z.coerce.number().min(0, 'must be >= 0');
/** The backend choice every command accepts. */
export const backendOption = () => z.enum(['cpu', 'webgpu', 'auto']).optional();
