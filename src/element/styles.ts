import { css } from 'lit';

/** Styles of `<ws-uploader>`. @internal */
export const styles = css`
  :host {
    display: block;
    font: inherit;
    color: var(--ws-uploader-color, inherit);
    --_accent: var(--ws-uploader-accent-color, #2563eb);
    --_border: var(--ws-uploader-border-color, #94a3b8);
    --_gap: var(--ws-uploader-gap, 0.75rem);
    --_radius: var(--ws-uploader-radius, 0.5rem);
  }
  :host([hidden]) {
    display: none;
  }
  [part='drop-area'] {
    display: grid;
    gap: 0.25rem;
    place-items: center;
    padding: 1.5rem;
    border: 2px dashed var(--_border);
    border-radius: var(--_radius);
    cursor: pointer;
    text-align: center;
  }
  [part='drop-area']:focus-visible {
    outline: 3px solid var(--_accent);
    outline-offset: 2px;
  }
  :host([dragover]) [part='drop-area'] {
    border-color: var(--_accent);
    background: color-mix(in srgb, var(--_accent) 8%, transparent);
  }
  :host([disabled]) [part='drop-area'] {
    opacity: 0.5;
    cursor: not-allowed;
  }
  .hint {
    font-size: 0.875em;
    opacity: 0.8;
  }
  h3 {
    font-size: 0.875em;
    margin: var(--_gap) 0 0.25rem;
  }
  ul {
    list-style: none;
    margin: 0;
    padding: 0;
    display: grid;
    gap: 0.25rem;
  }
  [part~='server'] {
    display: flex;
    gap: 0.5rem;
    align-items: baseline;
  }
  .dot {
    width: 0.6em;
    height: 0.6em;
    border-radius: 50%;
    background: #94a3b8;
    align-self: center;
  }
  [data-state='open'] .dot {
    background: #16a34a;
  }
  [data-state='down'] .dot {
    background: #dc2626;
  }
  [part~='file'] {
    display: grid;
    grid-template-columns: 1fr auto;
    gap: 0.25rem 0.5rem;
  }
  .name {
    overflow: hidden;
    text-overflow: ellipsis;
    white-space: nowrap;
  }
  [part='progress'] {
    grid-column: 1 / -1;
    height: 0.4rem;
    border-radius: 0.2rem;
    background: color-mix(in srgb, var(--_border) 40%, transparent);
    overflow: hidden;
  }
  [part='progress'] > div {
    height: 100%;
    background: var(--_accent);
    transition: width 0.1s linear;
  }
  .visually-hidden {
    position: absolute;
    width: 1px;
    height: 1px;
    overflow: hidden;
    clip: rect(0 0 0 0);
    white-space: nowrap;
  }
`;
