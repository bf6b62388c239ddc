import { css } from 'lit';

/**
 * Styles of `<ws-uploader>`. Colors follow the page's `color-scheme` (`light-dark()`): a page
 * with `color-scheme: light dark` gets the dark look on a dark system.
 * @internal
 */
export const styles = css`
  :host {
    display: block;
    --_background: var(--ws-uploader-background, transparent);
    --_gap: var(--ws-uploader-gap, 0.75rem);
    --_server-0: var(--ws-uploader-server-color-1, light-dark(#2563eb, #60a5fa));
    --_server-1: var(--ws-uploader-server-color-2, light-dark(#16a34a, #4ade80));
    --_server-2: var(--ws-uploader-server-color-3, light-dark(#d97706, #fbbf24));
  }
  [part='drop-area'] {
    display: grid;
    gap: 0.25rem;
    place-items: center;
    padding: 1.5rem;
    border: 2px dashed var(--_border);
    border-radius: var(--_radius);
    background: var(--_background);
    cursor: pointer;
    text-align: center;
    transition:
      border-color 0.15s,
      background-color 0.15s;
  }
  [part='drop-area']:focus-visible {
    outline: 3px solid var(--_accent);
    outline-offset: 2px;
  }
  :host([dragover]) [part='drop-area'] {
    border-color: var(--_accent);
    background: color-mix(in srgb, var(--_accent) 10%, transparent);
  }
  :host([disabled]) [part='drop-area'] {
    opacity: 0.5;
    cursor: not-allowed;
  }
  .label {
    font-weight: 600;
  }
  .hint {
    font-size: 0.875em;
    opacity: 0.8;
  }
  h3 {
    font-size: 0.875em;
    margin: var(--_gap) 0 0.25rem;
    text-transform: uppercase;
    letter-spacing: 0.04em;
    opacity: 0.8;
  }
  ul {
    list-style: none;
    margin: 0;
    padding: 0;
    display: grid;
    gap: 0.4rem;
  }
  .waiting {
    margin: 0;
    opacity: 0.8;
  }
  [part~='server'] {
    display: flex;
    flex-wrap: wrap;
    gap: 0.25rem 0.75rem;
    align-items: baseline;
    font-variant-numeric: tabular-nums;
  }
  .server-id {
    font-weight: 600;
  }
  .dot {
    width: 0.6em;
    height: 0.6em;
    border-radius: 50%;
    background: var(--_border);
    align-self: center;
  }
  [data-state='open'] > .dot {
    background: light-dark(#16a34a, #4ade80);
  }
  [data-state='degraded'] > .dot {
    background: light-dark(#d97706, #fbbf24);
  }
  [data-state='down'] > .dot {
    background: var(--_error);
  }
  [part~='protocol'] {
    font-family: ui-monospace, monospace;
    font-size: 0.85em;
    padding: 0 0.3em;
    border: 1px solid var(--_border);
    border-radius: 0.25rem;
  }
  [part~='file-list'] {
    grid-template-columns: minmax(0, 1fr) auto auto;
  }
  [part~='file'] {
    display: grid;
    grid-column: 1 / -1;
    /* The rows share the list's columns, so sizes and buttons line up from row to row. */
    grid-template-columns: subgrid;
    grid-template-areas:
      'name size actions'
      'status figures actions'
      'bar bar bar'
      'shares shares shares';
    gap: 0.15rem 0.75rem;
    align-items: baseline;
    font-variant-numeric: tabular-nums;
  }
  .name {
    grid-area: name;
    overflow: hidden;
    text-overflow: ellipsis;
    white-space: nowrap;
    font-weight: 600;
  }
  .size {
    grid-area: size;
  }
  [part~='file-state'] {
    grid-area: status;
  }
  .figures {
    grid-area: figures;
    justify-self: end;
  }
  .shares {
    grid-area: shares;
  }
  .size,
  .figures,
  .shares,
  [part~='file-state'] {
    font-size: 0.875em;
    opacity: 0.85;
  }
  [data-state='failed'] [part~='file-state'] {
    color: var(--_error);
    opacity: 1;
  }
  .actions {
    grid-area: actions;
    display: flex;
    gap: 0.25rem;
    align-self: center;
  }
  [part~='progress'] {
    grid-area: bar;
    margin-top: 0.15rem;
    display: flex;
    height: 0.45rem;
    border-radius: 0.25rem;
    background: color-mix(in srgb, var(--_border) 35%, transparent);
    overflow: hidden;
  }
  [part~='progress-segment'] {
    height: 100%;
    background: var(--_accent);
    transition: width 0.15s linear;
  }
  [data-state='complete'] [part~='progress-segment'] {
    background: light-dark(#16a34a, #4ade80);
  }
  [data-state='failed'] [part~='progress-segment'] {
    background: var(--_error);
  }
  [part='rejected-list'] li {
    display: flex;
    gap: 0.75rem;
    align-items: baseline;
    justify-content: space-between;
    color: var(--_error);
  }
  @media (prefers-reduced-motion: reduce) {
    [part='drop-area'],
    [part~='progress-segment'] {
      transition: none;
    }
  }
`;
