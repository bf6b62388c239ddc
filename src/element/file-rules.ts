/**
 * Which files `<ws-uploader>` takes: its `accept`, `max-file-size` and `max-files`. Pure: no DOM.
 */

/** Why a file was not taken. */
export type FileRejectReason = 'type' | 'size' | 'count';

/** The rules, from the element's attributes. */
export interface FileRules {
  /** As the `accept` attribute of a file input: MIME types, `type/*`, `.ext`; empty takes all. */
  readonly accept: string;
  /** Largest file in bytes; 0 for no limit. */
  readonly maxFileSize: number;
  /** Most files the element holds; 0 for no limit. */
  readonly maxFiles: number;
}

/**
 * Whether a file matches an `accept` list.
 * @param file its name and type
 * @param accept the list
 * @internal
 */
export function acceptsType(
  file: { readonly name: string; readonly type: string },
  accept: string,
): boolean {
  const tokens = accept
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');
  if (tokens.length === 0) return true;
  const name = file.name.toLowerCase();
  // The MIME type's essence: a pasted text is `text/plain;charset=utf-8`.
  const type = file.type.split(';')[0]!.trim().toLowerCase();
  return tokens.some((t) =>
    t.startsWith('.')
      ? name.endsWith(t)
      : t.endsWith('/*')
        ? type.startsWith(t.slice(0, -1))
        : type === t,
  );
}

/**
 * Splits files into those the rules take and those they reject, in order: the count limit
 * takes the first files that pass the other rules.
 * @param files files offered
 * @param rules the rules
 * @param held files the element already holds
 * @internal
 */
export function checkFiles<F extends Blob>(
  files: readonly F[],
  rules: FileRules,
  held: number,
): { accepted: F[]; rejected: { file: F; reason: FileRejectReason }[] } {
  const accepted: F[] = [];
  const rejected: { file: F; reason: FileRejectReason }[] = [];
  for (const file of files) {
    const name = (file as Blob & { name?: string }).name ?? '';
    let reason: FileRejectReason | undefined;
    if (!acceptsType({ name, type: file.type }, rules.accept)) reason = 'type';
    else if (rules.maxFileSize > 0 && file.size > rules.maxFileSize) reason = 'size';
    else if (rules.maxFiles > 0 && held + accepted.length >= rules.maxFiles) reason = 'count';
    if (reason) rejected.push({ file, reason });
    else accepted.push(file);
  }
  return { accepted, rejected };
}
