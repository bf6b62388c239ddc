import { css } from 'lit';

/**
 * Styles `<ws-uploader>` and `<ws-download>` share: the theme's custom properties, buttons, focus
 * rings and visually hidden text, so one theme styles both.
 * @internal
 */
export const sharedStyles = css`
  :host {
    font: inherit;
    color: var(--ws-uploader-color, inherit);
    --_accent: var(--ws-uploader-accent-color, light-dark(#2563eb, #60a5fa));
    --_border: var(--ws-uploader-border-color, light-dark(#94a3b8, #64748b));
    --_error: var(--ws-uploader-error-color, light-dark(#b91c1c, #f87171));
    --_radius: var(--ws-uploader-radius, 0.5rem);
  }
  :host([hidden]) {
    display: none;
  }
  button {
    font: inherit;
    font-size: 0.875em;
    color: inherit;
    background: transparent;
    border: 1px solid var(--_border);
    border-radius: calc(var(--_radius) / 2);
    padding: 0.15rem 0.6rem;
    cursor: pointer;
  }
  button:hover {
    border-color: var(--_accent);
  }
  button:focus-visible,
  a:focus-visible {
    outline: 3px solid var(--_accent);
    outline-offset: 2px;
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
