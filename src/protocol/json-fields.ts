/**
 * Field readers shared by the JSON codecs (control and registry): each returns the field's value
 * when it is valid and throws a {@link ProtocolError} naming the field when it is not.
 * @internal
 */
import { ITEM_ID_PATTERN, MAX_CONTROL_MESSAGE_LENGTH } from './constants.js';
import { ProtocolError } from './errors.js';

/** A decoded JSON object. */
export type Obj = Record<string, unknown>;

export function parseObject(text: string): Obj {
  if (typeof text !== 'string') bad('control frames must be text');
  if (text.length > MAX_CONTROL_MESSAGE_LENGTH) {
    throw new ProtocolError(
      'frame-too-large',
      `control message over ${MAX_CONTROL_MESSAGE_LENGTH} characters`,
    );
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError('message-invalid-json', 'control message is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ProtocolError('message-invalid-json', 'control message is not a JSON object');
  }
  return v as Obj;
}

export function bad(message: string): never {
  throw new ProtocolError('message-invalid', message);
}

export function obj(v: unknown, field: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${field} must be an object`);
  return v as Obj;
}

export function str(o: Obj, field: string, min: number, max: number): string {
  const v = o[field];
  if (typeof v !== 'string') bad(`${field} must be a string`);
  if (v.length < min || v.length > max) bad(`${field} must have ${min}..${max} characters`);
  return v;
}

export function optStr(o: Obj, field: string, max: number): string | undefined {
  return o[field] === undefined ? undefined : str(o, field, 1, max);
}

export function idValue(v: unknown, field: string): string {
  if (typeof v !== 'string' || !ITEM_ID_PATTERN.test(v))
    bad(`${field} must match [A-Za-z0-9_-]{1,128}`);
  return v;
}

export function id(o: Obj, field: string): string {
  return idValue(o[field], field);
}

export function num(o: Obj, field: string, min: number, max: number): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    bad(`${field} must be a number in ${min}..${max}`);
  }
  return v;
}

export function int(o: Obj, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    bad(`${field} must be a non-negative integer`);
  return v;
}

export function sha(o: Obj, field: string): string {
  const v = o[field];
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v))
    bad(`${field} must be 64 lowercase hex digits`);
  return v;
}

export function arr(o: Obj, field: string, max: number): unknown[] {
  const v = o[field];
  if (!Array.isArray(v)) bad(`${field} must be an array`);
  if (v.length > max) bad(`${field} has more than ${max} entries`);
  return v;
}
