/**
 * The upload-server health list of `<ws-uploader>`: each server's state, round-trip time,
 * protocol in use and throughput, updated live.
 */
import { html, nothing, type TemplateResult } from 'lit';
import type { ServerStatus } from '../engine/types.js';
import type { WsUploaderI18n } from './i18n.js';

/**
 * @param servers the servers
 * @param t strings
 * @param sending servers an upload is going to now: only theirs is a current throughput (the
 *   engine keeps the last rate it measured of the others)
 * @internal
 */
export function renderServers(
  servers: readonly ServerStatus[],
  t: WsUploaderI18n,
  sending?: ReadonlySet<string>,
): TemplateResult {
  return html`<ul part="server-list" aria-labelledby="servers-heading">
    ${servers.map(
      (s) =>
        html`<li part="server" data-state=${s.state} data-server-id=${s.id}>
          <span class="dot" aria-hidden="true"></span>
          <span class="server-id">${s.id}</span>
          <span class="server-state">${t.connection[s.state]}</span>
          ${
            s.protocol === undefined
              ? nothing
              : html`<span class="protocol" part="protocol">${s.protocol}</span>`
          }
          ${s.rttMs === undefined ? nothing : html`<span class="rtt">${t.rtt(s.rttMs)}</span>`}
          ${
            s.throughput === undefined || !sending?.has(s.id)
              ? nothing
              : html`<span class="throughput">${t.rate(s.throughput)}</span>`
          }
        </li>`,
    )}
  </ul>`;
}
