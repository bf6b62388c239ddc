/**
 * What the downloader's pages and its service worker say to each other, and where the worker
 * serves items. No side effects: both sides import it.
 */
import type { ItemLocation } from '../engine/types.js';

/** Where items are served, under the service worker's scope. */
export const ITEMS_PATH = 'ws-uploader/items/';

/** What a page posts to the worker: where an item is, and the part size it stores by. */
export interface ItemNotice {
  readonly type: 'ws-uploader-item';
  readonly location: ItemLocation;
  readonly partSize: number;
}

/** What the worker posts to a page when it needs to know where an item is. */
export interface LocateRequest {
  readonly type: 'ws-uploader-locate';
  readonly itemId: string;
}
