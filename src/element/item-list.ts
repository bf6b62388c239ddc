/**
 * One row of `<ws-uploader>`'s file list: name, size, bytes stored of total, speed, time left, a
 * progress bar split by server when the item goes to several, its state and its buttons.
 */
import { html, nothing, type TemplateResult } from 'lit';
import { ItemState, type ItemStatus } from '../engine/types.js';
import type { WsUploaderI18n } from './i18n.js';

/** What a row's buttons do. */
export type ItemAction = 'pause' | 'resume' | 'retry' | 'cancel';

/** What the row needs besides the item. */
export interface ItemRowContext {
  readonly t: WsUploaderI18n;
  /** Bytes per second lately, while uploading. */
  readonly rate: number | undefined;
  /** Seconds left, while uploading. */
  readonly secondsLeft: number | undefined;
  /** Position of each server in the server list (for its color in a split bar). */
  readonly serverIndex: (serverId: string) => number;
  readonly act: (action: ItemAction, item: ItemStatus) => void;
}

/** Buttons each state offers. */
const ACTIONS: Record<ItemState, readonly ItemAction[]> = {
  publishing: ['pause', 'cancel'],
  published: ['pause', 'cancel'],
  uploading: ['pause', 'cancel'],
  paused: ['resume', 'cancel'],
  failed: ['retry', 'cancel'],
  complete: [],
};

/**
 * @param item the item
 * @param c strings, measures and what the buttons do
 * @internal
 */
export function renderItem(item: ItemStatus, c: ItemRowContext): TemplateResult {
  const { t } = c;
  const total = item.bytesTotal || item.size;
  const stored = item.state === ItemState.COMPLETE ? total : item.bytesStored;
  const pct = total === 0 ? (item.state === ItemState.COMPLETE ? 100 : 0) : (stored / total) * 100;
  // In the order of the server list, so the colors and the shares line keep their places.
  const shares = Object.entries(item.bytesByServer ?? {})
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => c.serverIndex(a) - c.serverIndex(b));
  const split = shares.length > 1 && item.state !== ItemState.COMPLETE;
  const uploading = item.state === ItemState.UPLOADING;
  const status =
    item.state === ItemState.FAILED
      ? (t.errors[item.errorCode ?? ''] ?? t.errors.default)
      : t.itemState[item.state];
  const figures = [
    t.progress(stored, total),
    uploading && c.rate !== undefined ? t.rate(c.rate) : undefined,
    uploading && c.secondsLeft !== undefined ? t.timeLeft(c.secondsLeft) : undefined,
  ].filter((f) => f !== undefined);
  return html`<li part="file" data-item-id=${item.itemId} data-state=${item.state}>
    <span class="name" title=${item.name}>${item.name}</span>
    <span class="size">${t.size(item.size)}</span>
    <span class="status" part="file-state">${status}</span>
    <span class="figures">${figures.join(' · ')}</span>
    <div
      part="progress"
      role="progressbar"
      aria-label=${`${item.name}: ${status}`}
      aria-valuemin="0"
      aria-valuemax="100"
      aria-valuenow=${item.state === ItemState.PUBLISHING ? nothing : Math.floor(pct)}
      aria-valuetext=${t.progress(stored, total)}
    >
      ${
        split
          ? shares.map(
              ([serverId, n]) =>
                html`<div
                  part="progress-segment"
                  data-server-id=${serverId}
                  style="width: ${(n / total) * 100}%; background: var(--_server-${c.serverIndex(serverId) % 3})"
                  title=${t.serverShare(serverId, n)}
                ></div>`,
            )
          : html`<div part="progress-segment" style="width: ${pct}%"></div>`
      }
    </div>
    ${
      split
        ? html`<span class="shares"
            >${shares.map(([id, n]) => t.serverShare(id, n)).join(' · ')}</span
          >`
        : nothing
    }
    <span class="actions">
      ${ACTIONS[item.state].map(
        (action) =>
          html`<button
            type="button"
            part="button ${action}-button"
            aria-label=${`${t[action]} ${item.name}`}
            @click=${() => c.act(action, item)}
          >
            ${t[action]}
          </button>`,
      )}
    </span>
  </li>`;
}

/**
 * A file the element holds back until `publish()` (`no-auto`).
 * @param file the file
 * @param key its key in the element
 * @param t strings
 * @param remove drops it
 * @internal
 */
export function renderHeld(
  file: File,
  key: string,
  t: WsUploaderI18n,
  remove: () => void,
): TemplateResult {
  return html`<li part="file" data-held=${key} data-state="held">
    <span class="name" title=${file.name}>${file.name}</span>
    <span class="size">${t.size(file.size)}</span>
    <span class="status" part="file-state">${t.itemState.held}</span>
    <span class="figures"></span>
    <span class="actions">
      <button
        type="button"
        part="button dismiss-button"
        aria-label=${`${t.dismiss} ${file.name}`}
        @click=${remove}
      >
        ${t.dismiss}
      </button>
    </span>
  </li>`;
}
